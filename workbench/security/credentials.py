"""The credentials file: users, their roles and argon2id password hashes — never a password.

A JSON file, readable by its owner only (mode 0600)::

    {"version": 1, "users": {"ana": {"role": "admin", "hash": "$argon2id$v=19$m=65536,t=3,p=4$…"}}}

``workbench users add NAME --role operator`` writes it (the password from a prompt or
standard input, never the command line). :meth:`Credentials.verify` checks a password
with argon2's verification (constant time in the password); an unknown user is
checked against a fixed dummy hash, so the answer takes as long as for a known one.

Examples
--------
>>> import tempfile, pathlib
>>> creds = Credentials(pathlib.Path(tempfile.mkdtemp()) / "users.json")
>>> creds.add("ana", "operator", "correct horse battery")
>>> creds.verify("ana", "correct horse battery")
User(name='ana', role='operator', via='password')
>>> creds.verify("ana", "wrong"), creds.verify("bob", "correct horse battery")
(None, None)
>>> "correct horse" in creds.path.read_text()
False
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from functools import cache
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.security.roles import User, check_role

__all__ = ["MIN_PASSWORD", "Credentials"]

#: shortest password accepted
MIN_PASSWORD = 12
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@cache
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, the library's (RFC 9106) defaults


@cache
def _dummy_hash() -> str:
    return str(_hasher().hash("workbench: no such user"))


class Credentials:
    """Users and roles of one credentials file (re-read when it changes on disk)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None
        self._users: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ConfigError(
                f"credentials file {self.path} does not exist; add a user: workbench users add NAME --role viewer"
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"credentials file {self.path} must be readable by its owner only (mode 0600), "
                f"not {stat.filemode(st.st_mode)}; run: chmod 600 {self.path}"
            )
        seen = (st.st_mtime, st.st_size)
        with self._lock:
            if seen != self._seen:
                try:
                    data = json.loads(self.path.read_text())
                    users = data["users"]
                    for name, entry in users.items():
                        check_role(entry["role"], what=f"credentials file {self.path}: user {name!r}: role")
                        if not str(entry["hash"]).startswith("$argon2"):
                            raise ConfigError(
                                f"credentials file {self.path}: user {name!r}: the password must be an argon2 "
                                "hash (add users with `workbench users add`), not plain text"
                            )
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ConfigError(
                        f"credentials file {self.path}: not a Workbench credentials file ({exc})"
                    ) from None
                self._users, self._seen = users, seen
            return self._users

    def users(self) -> dict[str, str]:
        """``{name: role}``."""
        return {name: entry["role"] for name, entry in self._load().items()}

    def add(self, name: str, role: str, password: str) -> None:
        """Add ``name`` with ``role``, or replace their role and password."""
        if not _NAME.match(name):
            raise ConfigError(f"user name: letters, digits and _ . @ - (1 to 64), not {name!r}")
        check_role(role, what=f"user {name!r}: role")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"user {name!r}: the password must have at least {MIN_PASSWORD} characters")
        users = dict(self._load()) if self.path.exists() else {}
        users[name] = {"role": role, "hash": _hasher().hash(password)}
        self._write(users)

    def remove(self, name: str) -> None:
        """Remove ``name`` (a ``ConfigError`` if there is no such user)."""
        users = dict(self._load())
        if name not in users:
            raise ConfigError(f"credentials file {self.path}: no user {name!r}; users: {sorted(users)}")
        del users[name]
        self._write(users)

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "users": users}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (an unknown name costs the same time)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        entry = self._load().get(name)
        try:
            ok = bool(_hasher().verify(entry["hash"] if entry else _dummy_hash(), password))
        except (VerificationError, InvalidHashError):
            ok = False
        return User(name, entry["role"]) if ok and entry is not None else None
