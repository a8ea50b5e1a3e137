"""Roles, the actions they allow, and :func:`authorize`: the one check every action passes.

Three roles, each allowing what the one before it does:

- ``viewer``: reads (the dashboard, the health of the pipeline);
- ``operator``: also tunes detectors, acknowledges alerts, silences them and gives feedback;
- ``admin``: also exports, backs up and restores, changes rules and reads the audit log.

A refusal is logged (logger ``workbench.security``) and appended to the audit log
with outcome ``refused`` before :class:`~workbench.errors.AccessError` is raised, so
a crafted websocket message that would retune a model leaves a trace even though
nothing changed.

Examples
--------
>>> viewer, operator = User("vic", "viewer"), User("ops", "operator")
>>> authorize(operator, "acknowledge")
>>> authorize(viewer, "acknowledge")
Traceback (most recent call last):
...
workbench.errors.AccessError: user 'vic' (role viewer) may not acknowledge: it needs role operator or above
>>> allowed("admin", "export"), allowed("operator", "export")
(True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import AccessError, ConfigError

if TYPE_CHECKING:
    from workbench.security.audit import AuditLog

__all__ = ["ACTIONS", "ROLES", "Guard", "User", "allowed", "authorize", "check_role", "role_from_claims"]

log = logging.getLogger("workbench.security")

#: roles, least first: each allows what the ones before it allow
ROLES = ("viewer", "operator", "admin")

#: each action and the least role that may do it
ACTIONS: dict[str, str] = {
    "view": "viewer",
    "tune": "operator",
    "acknowledge": "operator",
    "silence": "operator",
    "feedback": "operator",
    "export": "admin",
    "backup": "admin",
    "restore": "admin",
    "rules": "admin",
    "audit": "admin",
}


def check_role(role: str, *, what: str = "role") -> str:
    """``role`` if it is one of :data:`ROLES` (a ``ConfigError`` naming the choices otherwise)."""
    if role not in ROLES:
        raise ConfigError(f"{what}: expected one of {list(ROLES)}, not {role!r}")
    return role


@dataclass(frozen=True)
class User:
    """Who acts: a name, a role, and how they were identified (``password``, ``oauth``, ``local``)."""

    name: str
    role: str
    via: str = "password"

    def __post_init__(self) -> None:
        check_role(self.role, what=f"user {self.name!r}: role")


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (an unknown action is a ``ConfigError``)."""
    if action not in ACTIONS:
        raise ConfigError(f"action: expected one of {sorted(ACTIONS)}, not {action!r}")
    return ROLES.index(check_role(role)) >= ROLES.index(ACTIONS[action])


def authorize(
    user: User | None, action: str, *, what: str = "", audit: AuditLog | None = None, client: str = ""
) -> None:
    """Return if ``user`` may do ``action``; else log, audit (outcome ``refused``) and raise ``AccessError``.

    ``what`` names the object (an alert's fingerprint, a detector); ``client`` the
    address the request came from. ``None`` is nobody signed in: refused.
    """
    if user is not None and allowed(user.role, action):
        return
    need = ACTIONS[action]
    if user is None:
        message = f"nobody is signed in: {action} needs role {need} or above"
    else:
        message = f"user {user.name!r} (role {user.role}) may not {action}: it needs role {need} or above"
    log.warning("refused: %s%s", message, f" ({what})" if what else "")
    if audit is not None:
        audit.record(user, action, what=what, outcome="refused", client=client, detail=message)
    raise AccessError(message)


class Guard:
    """One session's user and the audit log: checks an action, runs it, records before → after.

    Views take a guard instead of a free-text "who" field: the user comes from the
    signed-in session on the server, never from the browser.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from workbench.security.audit import AuditLog
    >>> audit = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl")
    >>> g = Guard(User("ops", "operator"), audit)
    >>> g.run("acknowledge", lambda: "done", what="cpu_hot/a", before={"acknowledged_by": None},
    ...       after=lambda: {"acknowledged_by": "ops"})
    'done'
    >>> [(r["who"], r["action"], r["outcome"], r["after"]) for r in audit.read()]
    [('ops', 'acknowledge', 'ok', {'acknowledged_by': 'ops'})]
    """

    def __init__(self, user: User | None, audit: AuditLog | None = None, *, client: str = "") -> None:
        self.user, self.audit, self.client = user, audit, client

    @property
    def name(self) -> str:
        """The user's name (``anonymous`` when nobody is signed in)."""
        return self.user.name if self.user is not None else "anonymous"

    def may(self, action: str) -> bool:
        """Whether the user may do ``action`` (for showing or disabling widgets; never the check itself)."""
        return self.user is not None and allowed(self.user.role, action)

    def authorize(self, action: str, *, what: str = "") -> None:
        """:func:`authorize` for this session's user."""
        authorize(self.user, action, what=what, audit=self.audit, client=self.client)

    def run(
        self,
        action: str,
        do: Callable[[], Any],
        *,
        what: str = "",
        before: Any = None,
        after: Callable[[], Any] | None = None,
    ) -> Any:
        """Check ``action``, call ``do()``, and audit ``before`` → ``after()`` (outcome ``ok`` or ``failed``)."""
        self.authorize(action, what=what)
        try:
            result = do()
        except Exception as exc:
            if self.audit is not None:
                self.audit.record(
                    self.user, action, what=what, before=before, outcome="failed", client=self.client, detail=str(exc)
                )
            raise
        if self.audit is not None:
            self.audit.record(
                self.user,
                action,
                what=what,
                before=before,
                after=after() if after is not None else None,
                client=self.client,
            )
        return result


def role_from_claims(claims: dict[str, Any], mapping: dict[str, Any]) -> str:
    """The role an OAuth user's claims map to, by ``{"claim": …, "roles": {value: role}, "default": role}``.

    The highest role any of the claim's values maps to wins; none maps: ``default``.

    >>> m = {"claim": "groups", "roles": {"sre": "operator", "sre-leads": "admin"}, "default": "viewer"}
    >>> role_from_claims({"groups": ["staff", "sre"]}, m), role_from_claims({"groups": "sre-leads"}, m)
    ('operator', 'admin')
    >>> role_from_claims({}, m)
    'viewer'
    """
    value = claims.get(str(mapping.get("claim", "groups")))
    values = value if isinstance(value, list) else [value]
    table = mapping.get("roles", {})
    roles = [check_role(table[v], what="OAuth role mapping") for v in values if v in table]
    default = check_role(str(mapping.get("default", "viewer")), what="OAuth role mapping: default")
    return max(roles, key=ROLES.index) if roles else default
