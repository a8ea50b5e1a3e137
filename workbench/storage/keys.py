"""Secret keys from the environment or a key file, never from a command line or a log.

A key is 32 random bytes, written as 64 hex digits or as base64. It comes from,
in this order:

1. ``WORKBENCH_<KIND>_KEY``: the key itself (hex or base64);
2. ``WORKBENCH_<KIND>_KEY_FILE``: a file holding it, readable by its owner only;
3. the per-user default ``$XDG_CONFIG_HOME/workbench/<kind>.key`` (``~/.config/…``),
   created with mode 0600 on first use when ``create`` is set — zero set-up for a
   developer, and kept away from the data it protects: whoever can write a
   checkpoint folder cannot also forge the checkpoints in it.

``<KIND>`` is ``CHECKPOINT`` or ``BACKUP``. Purpose keys (one to authenticate, one
to encrypt) are derived from the key with HMAC-SHA256, so one secret never serves
two algorithms.

Examples
--------
>>> key = load_key("checkpoint", env={"WORKBENCH_CHECKPOINT_KEY": "ab" * 32})
>>> key
SecretKey(source='WORKBENCH_CHECKPOINT_KEY', key_id='66a95f9472bfc62f')
>>> len(key.derive("checkpoint/mac"))
32
>>> load_key("checkpoint", env={"WORKBENCH_CHECKPOINT_KEY": "abcd"})
Traceback (most recent call last):
...
workbench.errors.ConfigError: WORKBENCH_CHECKPOINT_KEY: a key must be hex or base64 of at least 32 bytes (got 2 bytes)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import ConfigError

__all__ = ["SecretKey", "default_key_path", "load_key", "parse_key"]

_MIN_BYTES = 32


@dataclass(frozen=True)
class SecretKey:
    """A secret key and where it came from (the key never shows in ``repr``).

    Parameters
    ----------
    material
        The key bytes (at least 32).
    source
        Where it came from, for messages: an environment variable or a file name.

    Examples
    --------
    >>> k = SecretKey(bytes(32), "example")
    >>> k.key_id
    '9c866f17cad8f7c4'
    >>> k.derive("a") != k.derive("b")
    True
    """

    material: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.material) < _MIN_BYTES:
            raise ConfigError(f"key from {self.source}: must be at least {_MIN_BYTES} bytes, not {len(self.material)}")

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (16 hex digits): tells keys apart, reveals nothing."""
        return hmac.new(self.material, b"workbench/key-id", hashlib.sha256).hexdigest()[:16]

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (``"checkpoint/mac"``, ``"backup/aes-gcm"`` …)."""
        return hmac.new(self.material, b"workbench/" + purpose.encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"SecretKey(source={self.source!r}, key_id={self.key_id!r})"


def parse_key(text: str | bytes, *, what: str) -> bytes:
    """Decode a key written as hex or base64 (surrounding whitespace ignored).

    Examples
    --------
    >>> len(parse_key("00" * 32, what="k"))
    32
    >>> import base64; len(parse_key(base64.b64encode(bytes(range(40))), what="k"))
    40
    """
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode()
    decoded: bytes | None = None
    try:
        decoded = bytes.fromhex(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        try:
            decoded = base64.b64decode(raw, altchars=b"-_" if b"-" in raw or b"_" in raw else None, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
    if decoded is None or len(decoded) < _MIN_BYTES:
        got = "not hex or base64" if decoded is None else f"got {len(decoded)} bytes"
        raise ConfigError(f"{what}: a key must be hex or base64 of at least {_MIN_BYTES} bytes ({got})")
    return decoded


def default_key_path(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """The per-user key file: ``$XDG_CONFIG_HOME/workbench/<kind>.key`` (``~/.config`` by default).

    Examples
    --------
    >>> default_key_path("checkpoint", {"XDG_CONFIG_HOME": "/cfg"}).as_posix()
    '/cfg/workbench/checkpoint.key'
    """
    env = os.environ if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "workbench" / f"{kind}.key"


def _read_key_file(path: Path, *, what: str) -> SecretKey:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{what}: key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what}: key file {path} must be readable by its owner only (mode 0600), not {stat.filemode(mode)}; "
            f"run: chmod 600 {path}"
        )
    return SecretKey(parse_key(path.read_bytes(), what=f"{what} ({path})"), str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(_MIN_BYTES) + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_key(kind: str, *, env: Mapping[str, str] | None = None, create: bool = False) -> SecretKey:
    """The key for ``kind`` (``"checkpoint"``, ``"backup"``) from the environment or a key file.

    Parameters
    ----------
    kind
        What the key protects; names the variables and the default file.
    env
        The environment (default: ``os.environ``).
    create
        Create the per-user default key file when no key is configured.
    """
    env = os.environ if env is None else env
    var = f"WORKBENCH_{kind.upper()}_KEY"
    inline, file = env.get(var), env.get(f"{var}_FILE")
    if inline and file:
        raise ConfigError(f"{var} and {var}_FILE are both set: set one of them")
    if inline:
        return SecretKey(parse_key(inline, what=var), var)
    if file:
        return _read_key_file(Path(file).expanduser(), what=f"{var}_FILE")
    path = default_key_path(kind, env)
    if not path.exists():
        if not create:
            raise ConfigError(f"{kind} key: none configured; set {var} or {var}_FILE (or create {path})")
        try:
            _create_key_file(path)
        except OSError as exc:
            raise ConfigError(
                f"{kind} key: cannot create the default key file {path} ({exc.strerror}); set {var} or {var}_FILE"
            ) from exc
    return _read_key_file(path, what=f"{kind} key")
