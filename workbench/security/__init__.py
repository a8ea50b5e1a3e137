"""Access control for a served Workbench: users and roles, the audit log, credentials, rate limits.

Nothing here imports Panel, Bokeh or Tornado: the served app (``workbench.apps``) and
the commands call these functions; the views take a :class:`Guard` so that every
action they run is checked on the server, whatever widget the browser shows.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "ACTIONS": "workbench.security.roles",
    "ROLES": "workbench.security.roles",
    "AuditLog": "workbench.security.audit",
    "Credentials": "workbench.security.credentials",
    "Guard": "workbench.security.roles",
    "RateLimiter": "workbench.security.limits",
    "User": "workbench.security.roles",
    "authorize": "workbench.security.roles",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
