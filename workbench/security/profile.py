"""``workbench serve --profile dev|prod``: what a served app needs before it may face a network.

:func:`problems` lists, for one set of serving options, every setting that the
profile refuses, each naming the setting and the fix. ``prod`` refuses to start
unless authentication is configured (Workbench's credentials file, or OAuth with a
cookie secret *and* an OAuth encryption key), websocket origins are exact, XSRF
cookies are on and session ids signed, ``--dev``/``--autoreload``/``--admin`` are off,
the address is loopback unless TLS or ``--behind-proxy`` is set, and Bokeh and Panel
are at or above :data:`MIN_VERSIONS`. Both profiles refuse secrets on the command
line (they show in ``ps``): they come from the environment or from files.

Examples
--------
>>> opts = ServeOptions(profile="prod", address="0.0.0.0", origins=("*",))
>>> for p in problems(opts, versions={"bokeh": "3.9.2", "panel": "1.9.4"}):
...     print(p.setting)
authentication
cookie secret
websocket origins
address
>>> problems(ServeOptions(), versions={"bokeh": "3.9.2", "panel": "1.9.4"})
[]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "ADVISORIES",
    "MIN_VERSIONS",
    "SECRET_ARGS",
    "UNSAFE_ARGS",
    "Problem",
    "ServeOptions",
    "is_loopback",
    "problems",
    "versions",
]

#: the least Bokeh and Panel releases served in ``prod`` and why
MIN_VERSIONS = {"bokeh": "3.8.2", "panel": "1.9.0"}
ADVISORIES = {
    "bokeh": "CVE-2026-21883 / GHSA-793v-589g-574v: incomplete websocket Origin validation "
    "(look-alike hosts such as dashboard.corp.attacker.com accepted), fixed in 3.8.2",
    "panel": "unauthenticated websocket handshakes answered after the handshake and next-url "
    "validation of the login handlers; the 1.9 line (verified on 1.9.4) refuses both",
}

#: ``panel serve`` options that carry a secret on the command line (refused in every profile)
SECRET_ARGS = {
    "--basic-auth": "use --credentials FILE (argon2 hashes, `workbench users add`)",
    "--cookie-secret": "use --cookie-secret-file FILE or WORKBENCH_COOKIE_KEY",
    "--oauth-secret": "set PANEL_OAUTH_SECRET in the environment",
    "--oauth-encryption-key": "set PANEL_OAUTH_ENCRYPTION in the environment",
}
#: ``panel serve`` options refused in ``prod``
UNSAFE_ARGS = {
    "--dev": "drop --dev (it reloads code from disk and shows tracebacks)",
    "--autoreload": "drop --autoreload",
    "--admin": "drop --admin (the admin panel shows every session and the process)",
}


@dataclass(frozen=True)
class Problem:
    """One refused setting: what it is, what is wrong, and the fix."""

    setting: str
    why: str
    fix: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.why}; fix: {self.fix}"


@dataclass(frozen=True)
class ServeOptions:
    """What ``workbench serve`` was asked for (secrets only as "present or not")."""

    profile: str = "dev"
    address: str = "localhost"
    origins: Sequence[str] = ()
    credentials: str | None = None
    oauth_provider: str | None = None
    cookie_secret: bool = False
    oauth_encryption_key: bool = False
    xsrf: bool = True
    signed_sessions: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    behind_proxy: bool = False
    extra: Sequence[str] = field(default_factory=tuple)


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback address or ``localhost``."""
    if address in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def versions() -> dict[str, str]:
    """Installed Bokeh, Panel and Tornado versions."""
    out = {}
    for name in ("bokeh", "panel", "tornado"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _at_least(version: str, least: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) >= Version(least)
    except InvalidVersion:
        return False


def _flag(extra: Sequence[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in extra)


def problems(options: ServeOptions, *, versions: Mapping[str, str] | None = None) -> list[Problem]:
    """Every setting the profile refuses (empty: it may start)."""
    from workbench.errors import ConfigError

    if options.profile not in ("dev", "prod"):
        raise ConfigError(f"--profile: expected dev or prod, not {options.profile!r}")
    found = [
        Problem(arg, "a secret on the command line shows in the process list and in logs", fix)
        for arg, fix in SECRET_ARGS.items()
        if _flag(options.extra, arg)
    ]
    if options.oauth_provider and options.credentials:
        found.append(Problem("authentication", "both --credentials and --oauth-provider", "choose one"))
    if options.profile == "dev":
        return found
    if not options.credentials and not options.oauth_provider:
        found.append(
            Problem(
                "authentication",
                "none configured",
                "--credentials FILE (add users with `workbench users add NAME --role viewer`) or --oauth-provider NAME",
            )
        )
    if not options.cookie_secret:
        found.append(
            Problem("cookie secret", "none configured", "--cookie-secret-file FILE or WORKBENCH_COOKIE_KEY(_FILE)")
        )
    if options.oauth_provider and not options.oauth_encryption_key:
        found.append(
            Problem(
                "OAuth encryption key",
                "none configured (tokens would sit readable in cookies)",
                "set PANEL_OAUTH_ENCRYPTION (generate one with `panel oauth-secret`)",
            )
        )
    wild = [o for o in options.origins if "*" in o or o.strip() in ("", ".")]
    if wild or _flag(options.extra, "--allow-websocket-origin"):
        found.append(
            Problem(
                "websocket origins",
                f"must be exact host:port values, not {wild or 'a --allow-websocket-origin passed to panel'}",
                "--allow-origin HOST:PORT, once per origin the users' browsers use",
            )
        )
    if not options.xsrf:
        found.append(Problem("XSRF cookies", "off", "drop --no-xsrf"))
    if not options.signed_sessions or "unsigned" in options.extra:
        found.append(Problem("session ids", "unsigned", "drop --session-ids unsigned (sessions are signed by default)"))
    for arg, fix in UNSAFE_ARGS.items():
        if _flag(options.extra, arg):
            found.append(Problem(arg, "on", fix))
    if bool(options.tls_cert) != bool(options.tls_key):
        found.append(Problem("TLS", "--tls-cert and --tls-key go together", "give both, or neither"))
    tls = bool(options.tls_cert and options.tls_key)
    if not is_loopback(options.address) and not tls and not options.behind_proxy:
        found.append(
            Problem(
                "address",
                f"{options.address!r} is not loopback, and neither TLS nor a proxy is configured",
                "--tls-cert FILE --tls-key FILE, or --behind-proxy (a TLS proxy in front), or --address 127.0.0.1",
            )
        )
    have = versions if versions is not None else globals()["versions"]()
    for name, least in MIN_VERSIONS.items():
        if not _at_least(have.get(name, "0"), least):
            found.append(
                Problem(
                    f"{name} version",
                    f"{have.get(name)} is below {least} ({ADVISORIES[name]})",
                    f"upgrade: uv add '{name}>={least}'",
                )
            )
    return found
