"""Ownership of an output folder: one run at a time writes it.

A run (``workbench replay``, ``workbench run``) holds an advisory lock
(``fcntl.flock``) on ``OUT/.workbench.lock`` for its whole life and writes its owner
(pid, host, start time, command) into that file. A second run on the same folder is
refused with a message naming the owner. The kernel releases a ``flock`` when its
process dies, however it dies (``kill -9`` included), so a lock file left by a dead
run is stale by construction: the next run takes the lock and overwrites the owner.

The lock is advisory and local: it works between processes of one machine and on
file systems with working ``flock`` (local disks; NFS v4 emulates it). Two machines
writing one folder over a network file system without ``flock`` are not protected.

Examples
--------
>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> with OutputLock(out) as lock:
...     lock.owner()["pid"] == os.getpid()
True
>>> OutputLock(out).owner() is None   # released: the file is emptied
True
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from workbench.errors import ConfigError

__all__ = ["LOCK_FILE", "OutputLock", "sweep_temporaries"]

LOCK_FILE = ".workbench.lock"

# what workbench.storage.atomic and the alerts outbox write before their rename
_TEMPORARY = re.compile(r"^(\..+\.tmp-\d+|\.outbox-\w+)$")


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files that runs killed mid-write left under ``folder``; returns them.

    Call it only while holding the folder's lock: then no live run of ours writes
    there, and every ``.NAME.tmp-PID`` file is a leftover.
    """
    gone = []
    for path in folder.rglob(".*"):
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


class OutputLock:
    """The advisory lock on output folder ``folder`` (created when missing).

    ``acquire`` raises :class:`~workbench.errors.ConfigError` when another live
    process holds it, naming that process. ``taken_over`` is the owner record a
    dead run left behind, when there was one; ``swept`` the temporary files of dead
    runs removed on taking the lock.
    """

    def __init__(self, folder: str | Path, *, what: str = "run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self.taken_over: dict[str, Any] | None = None
        self._fd: int | None = None
        self.swept: list[Path] = []

    def owner(self) -> dict[str, Any] | None:
        """The owner record in the lock file (``None`` when empty or unreadable)."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> OutputLock:
        """Take the lock or raise, naming the owner; returns ``self``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.owner() or {}
            raise ConfigError(
                f"output folder {str(self.folder)!r}: in use by another run (pid {who.get('pid', '?')} on "
                f"host {who.get('host', '?')}, since {who.get('since', '?')}: {who.get('command', '?')}); "
                "one run at a time writes a folder: wait for it, stop it, or give another --out"
            ) from None
        previous = self.owner()
        if previous:  # the lock is ours, so whoever wrote this is gone
            self.taken_over = previous
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": self.what,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        self.swept = sweep_temporaries(self.folder)
        return self

    def release(self) -> None:
        """Empty the owner record and let go of the lock."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
