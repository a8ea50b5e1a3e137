"""The served app's front door: who may connect, log in, and load pages, and what each response carries.

``workbench serve`` writes its serving policy into the server's environment
(``WORKBENCH_SERVE_POLICY``, JSON, no secrets); the ``--setup`` script calls
:func:`install` before the Bokeh server is built, and the ``--auth-module``
(``auth_module.py``, beside this file) hands Bokeh :func:`get_user` and the login and
logout handlers below. In every profile:

- the ``Host`` header must be one of the allowed origins (400 otherwise), and a
  websocket's ``Origin`` must be one of them exactly (403 otherwise, also when it has none);
- the session token carries no request header and no cookie (Bokeh's
  ``include_headers``/``include_cookies`` set to nothing): page scripts can read the
  token, so a proxy's ``Authorization`` or an SSO cookie must never be in it;
- pages send ``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``,
  ``X-Content-Type-Options: nosniff`` and, for HTML and JSON, ``Cache-Control: no-store``;
- page loads, health probes and logins are rate-limited per client (429 with ``Retry-After``);
- logins: argon2id hashes (:class:`~workbench.security.credentials.Credentials`),
  a lock-out per user name, a signed cookie ``HttpOnly; Secure; SameSite=Lax``, the
  ``next`` address followed only when it is a path of this server, and every attempt
  in the audit log.
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tornado.ioloop import IOLoop
from tornado.web import OutputTransform, RequestHandler

from workbench.security.audit import AuditLog
from workbench.security.credentials import Credentials
from workbench.security.limits import Lockout, RateLimiter
from workbench.security.roles import User, role_from_claims

__all__ = [
    "COOKIE",
    "LoginHandler",
    "LogoutHandler",
    "Policy",
    "allowed_host",
    "audit_log",
    "get_user",
    "install",
    "policy",
    "safe_next",
    "session_user",
]

log = logging.getLogger("workbench.security")

#: the signed cookie naming the signed-in user
COOKIE = "workbench_user"


@dataclass(frozen=True)
class Policy:
    """How this server serves (``WORKBENCH_SERVE_POLICY``); holds no secret."""

    profile: str = "dev"
    hosts: tuple[str, ...] = ()
    credentials: str | None = None
    oauth: bool = False
    oauth_roles: dict[str, Any] = field(default_factory=dict)
    tls: bool = False
    behind_proxy: bool = False
    audit: str = "data/audit.jsonl"
    app_paths: tuple[str, ...] = ("/", "/monitor")
    page_rate: int = 60
    probe_rate: int = 120
    login_rate: int = 10
    lockout_failures: int = 10
    lockout_s: float = 900.0
    cookie_days: float = 1.0
    dev_role: str = "admin"

    @property
    def auth(self) -> bool:
        """Whether users sign in."""
        return bool(self.credentials or self.oauth)

    def to_env(self) -> str:
        """The JSON the server process reads back with :func:`policy`."""
        return json.dumps(self.__dict__)


@cache
def policy() -> Policy:
    """The server's policy (from ``WORKBENCH_SERVE_POLICY``; the default dev policy without it)."""
    text = os.environ.get("WORKBENCH_SERVE_POLICY")
    if not text:
        return Policy()
    data = json.loads(text)
    data["hosts"], data["app_paths"] = tuple(data["hosts"]), tuple(data["app_paths"])
    return Policy(**data)


@cache
def audit_log() -> AuditLog:
    """The server's audit log (one per process)."""
    return AuditLog(policy().audit)


@cache
def _credentials() -> Credentials:
    return Credentials(policy().credentials or "")


@cache
def _limits() -> dict[str, Any]:
    p = policy()
    return {
        "pages": RateLimiter(p.page_rate),
        "probes": RateLimiter(p.probe_rate),
        "logins": RateLimiter(p.login_rate),
        "lockout": Lockout(p.lockout_failures, lock_s=p.lockout_s),
    }


def safe_next(value: str | None, default: str = "/monitor") -> str:
    """``value`` when it is a path on this server, else ``default`` (never ``//host``, a scheme or a backslash).

    >>> safe_next("/monitor?refresh=2"), safe_next("//evil.example"), safe_next("https://evil.example/")
    ('/monitor?refresh=2', '/monitor', '/monitor')
    >>> safe_next("/\\\\evil.example"), safe_next("/%2F/evil.example")
    ('/monitor', '/monitor')
    """
    from urllib.parse import unquote, urlsplit

    if not value or not value.startswith("/") or any(ord(c) < 32 for c in value):
        return default
    for text in (value, unquote(value)):
        parts = urlsplit(text)
        if text.startswith("//") or "\\" in text or parts.scheme or parts.netloc:
            return default
    return value


# -- who is signed in -------------------------------------------------------------------
def get_user(handler: RequestHandler) -> str | None:
    """Bokeh's hook: the signed-in user's name from the signed cookie, or None.

    The user (with the role the credentials file gives now) is also kept on the
    request, where the session reads it (:func:`session_user`): identity comes from
    the server, never from the page.
    """
    raw = handler.get_secure_cookie(COOKIE, max_age_days=policy().cookie_days)
    if not raw:
        return None
    name = raw.decode("utf-8", "replace")
    role = _credentials().users().get(name)
    if role is None:  # removed from the credentials file since
        return None
    handler.request.workbench_user = User(name, role)  # type: ignore[attr-defined]
    return name


def session_user(request: Any) -> User | None:
    """The user of a session, from the request it was created by (None: nobody signed in).

    Without authentication (the dev profile's default) everyone is the local user,
    with the dev profile's role.
    """
    user = getattr(request, "workbench_user", None) if request is not None else None
    if isinstance(user, User):
        return user
    if not policy().auth:
        return User("local", policy().dev_role, via="local")
    return None


def _client(handler: RequestHandler) -> str:
    return str(handler.request.remote_ip or "")


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Workbench · sign in</title>
<style>body{{font-family:system-ui,sans-serif;background:#f4f6f8;display:flex;justify-content:center;margin-top:12vh}}
form{{background:#fff;padding:2em 2.5em;border-radius:8px;box-shadow:0 1px 6px #0002;min-width:18em}}
label{{display:block;margin:.8em 0 .2em}}input{{width:100%;padding:.45em;box-sizing:border-box}}
button{{margin-top:1.2em;padding:.5em 1.4em;background:#1f4e79;color:#fff;border:0;border-radius:4px}}
.error{{color:#b00020}}</style></head><body>
<form method="post" action="login"><h2>Workbench</h2>{error}{xsrf}
<input type="hidden" name="next" value="{next}">
<label for="username">User</label><input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password"><button type="submit">Sign in</button></form></body></html>"""


class LoginHandler(RequestHandler):
    """``GET /login``: the form; ``POST /login``: check the password (rate-limited, locked out, audited)."""

    def _page(self, error: str = "", status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(
            _PAGE.format(
                error=f'<p class="error">{html.escape(error)}</p>' if error else "",
                xsrf=self.xsrf_form_html(),
                next=html.escape(safe_next(self.get_argument("next", None)), quote=True),
            )
        )

    def get(self) -> None:  # noqa: D102
        self._page()

    async def post(self) -> None:  # noqa: D102
        limits, client = _limits(), _client(self)
        name = self.get_argument("username", "")[:64]
        password = self.get_argument("password", "")
        if not limits["logins"].hit(client) or limits["lockout"].locked(name):
            wait = max(limits["logins"].retry_after(client), 1)
            audit_log().record(
                None, "login", what=name, who=name, outcome="refused", client=client, detail="rate limit or lock-out"
            )
            self.set_header("Retry-After", str(wait))
            self._page(f"Too many attempts: try again in {wait} s.", status=429)
            return
        user = await IOLoop.current().run_in_executor(None, _credentials().verify, name, password)
        if user is None:
            limits["lockout"].failed(name)
            audit_log().record(
                None,
                "login",
                what=name,
                who=name,
                outcome="refused",
                client=client,
                detail="wrong user name or password",
            )
            log.warning("login refused for %r from %s", name, client)
            self._page("Wrong user name or password.", status=401)
            return
        audit_log().record(user, "login", what=name, client=client)
        self.set_secure_cookie(
            COOKIE, user.name, expires_days=policy().cookie_days, httponly=True, secure=True, samesite="Lax"
        )
        self.redirect(safe_next(self.get_argument("next", None)))


class LogoutHandler(RequestHandler):
    """``GET /logout``: forget the cookie (audited), back to the login page."""

    def get(self) -> None:  # noqa: D102
        user = None
        raw = self.get_secure_cookie(COOKIE, max_age_days=policy().cookie_days)
        if raw:
            user = raw.decode("utf-8", "replace")
            audit_log().record(None, "logout", what=user, who=user, client=_client(self))
        self.clear_cookie(COOKIE)
        self.redirect("login")


# -- every request ----------------------------------------------------------------------
class _Refuse(RequestHandler):
    def initialize(self, status: int, message: str, retry_after: int = 0) -> None:
        self.status, self.message, self.retry_after = status, message, retry_after

    def check_xsrf_cookie(self) -> None:  # answered before any XSRF check: nothing is done
        return

    def prepare(self) -> None:  # noqa: D102
        self.set_status(self.status)
        if self.retry_after:
            self.set_header("Retry-After", str(self.retry_after))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.message + "\n")


def _transform(tls: bool) -> type[OutputTransform]:
    class SecurityHeaders(OutputTransform):
        def transform_first_chunk(self, status_code: int, headers: Any, chunk: bytes, finishing: bool) -> Any:
            headers["X-Frame-Options"] = "DENY"
            headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            headers["X-Content-Type-Options"] = "nosniff"
            headers["Referrer-Policy"] = "same-origin"
            kind = str(headers.get("Content-Type", ""))
            if kind.startswith(("text/html", "application/json", "text/plain")) or status_code >= 300:
                headers["Cache-Control"] = "no-store"
            if tls:
                headers["Strict-Transport-Security"] = "max-age=31536000"
            return status_code, headers, chunk

    return SecurityHeaders


def allowed_host(host: str, hosts: set[str] | frozenset[str]) -> bool:
    """Whether ``host`` (a Host header or an Origin's netloc) is one of ``hosts`` exactly; no port: 80 or 443.

    >>> ok = {"localhost:5006", "monitor.example.org:443"}
    >>> [allowed_host(h, ok) for h in ("localhost:5006", "monitor.example.org", "localhost:5006.evil.test")]
    [True, True, False]
    """
    host = host.lower()
    if host in hosts:
        return True
    return ":" not in host.rsplit("]", 1)[-1] and (f"{host}:443" in hosts or f"{host}:80" in hosts)


def _guarded(app: Any, find: Any, p: Policy) -> Any:
    limits = _limits()
    hosts = frozenset(h.lower() for h in p.hosts)
    probes = ("/workbench/health", "/metrics")

    def find_handler(request: Any, **kwargs: Any) -> Any:
        host = (request.host or "").lower()
        if hosts and not allowed_host(host, hosts):
            log.warning("refused Host %r from %s", request.host, request.remote_ip)
            return app.get_handler_delegate(request, _Refuse, {"status": 400, "message": "Host not allowed"})
        path = request.path.rstrip("/") or "/"
        if path.endswith("/ws"):  # a browser always sends Origin on a websocket: it must be an allowed one, exactly
            from urllib.parse import urlsplit

            origin = request.headers.get("Origin", "")
            if not origin or (hosts and not allowed_host(urlsplit(origin).netloc, hosts)):
                log.warning("refused websocket Origin %r from %s", origin, request.remote_ip)
                return app.get_handler_delegate(request, _Refuse, {"status": 403, "message": "Origin not allowed"})
        limiter = limits["pages"] if path in p.app_paths else limits["probes"] if path in probes else None
        if limiter is not None and request.method == "GET" and not limiter.hit(str(request.remote_ip)):
            wait = limiter.retry_after(str(request.remote_ip))
            return app.get_handler_delegate(
                request, _Refuse, {"status": 429, "message": "Too many requests", "retry_after": wait}
            )
        return find(request, **kwargs)

    return find_handler


def _oauth_user(handler: Any, name: str | None, mapping: dict[str, Any]) -> None:
    """Keep an OAuth user, with the role their ID token's claims map to, on the request."""
    if not name:
        return
    claims: dict[str, Any] = {}
    try:
        from panel.io.state import state
        from panel.util import decode_token

        token = handler.get_secure_cookie("id_token")
        if token is not None:
            if state.encryption is not None:
                token = state.encryption.decrypt(token)
            claims = decode_token(token.decode(), signed=False) or {}
    except Exception:  # no readable ID token: the default role
        log.warning("OAuth user %r: no readable ID token claims; the mapping's default role applies", name)
    handler.request.workbench_user = User(name, role_from_claims(claims, mapping), via="oauth")


def install(p: Policy | None = None) -> None:
    """Make the Bokeh server built next follow ``p`` (see the module's docstring); idempotent."""
    from bokeh.server.tornado import BokehTornado

    p = p or policy()
    original = BokehTornado.__init__
    if getattr(original, "workbench", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("exclude_headers", None)
        kwargs.pop("exclude_cookies", None)
        kwargs["include_headers"] = []  # nothing of the request goes into the session token
        kwargs["include_cookies"] = []
        original(self, *args, **kwargs)
        self.settings["xsrf_cookie_kwargs"] = {"httponly": True, "secure": True, "samesite": "Lax"}
        self.add_transform(_transform(p.tls))
        self.find_handler = _guarded(self, self.find_handler, p)
        provider = self.auth_provider
        if p.oauth and provider.get_user_async is not None:
            inner = provider.get_user_async

            async def get_user_async(handler: Any) -> Any:
                name = await inner(handler)
                _oauth_user(handler, name, p.oauth_roles)
                return name

            type(provider).get_user_async = property(lambda _self: get_user_async)

    __init__.workbench = True  # type: ignore[attr-defined]
    BokehTornado.__init__ = __init__  # type: ignore[method-assign]
