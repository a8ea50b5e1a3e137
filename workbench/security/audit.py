"""The audit log: who did what, when, from where, and what it changed (before → after).

One JSON object per line, appended (``O_APPEND`` under an exclusive ``flock``, so the
served app and a ``workbench backup`` command can write one log together); never
rewritten. Every record has ``seq`` (its line number), ``at`` (UTC, ISO-8601),
``who``, ``role``, ``via``, ``action``, ``what``, ``outcome`` (``ok``, ``refused``,
``failed``), ``before``, ``after``, ``client`` and ``detail``.

:meth:`AuditLog.to_lake` copies the records not yet in a lake into its ``audit``
output (one file per export, named by the last record's ``seq``), so the audit trail
can be queried beside the data (``workbench query "select * from audit"``).

Examples
--------
>>> import tempfile, pathlib
>>> from workbench.security.roles import User
>>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl")
>>> _ = log.record(User("ana", "admin"), "backup", what="run/ → b.wbk", after={"files": 12})
>>> _ = log.record(None, "login", what="mallory", outcome="refused", client="10.0.0.9")
>>> [(r["seq"], r["who"], r["action"], r["outcome"]) for r in log.read()]
[(1, 'ana', 'backup', 'ok'), (2, None, 'login', 'refused')]
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.security.roles import User
    from workbench.storage.lake import Lake

__all__ = ["OUTCOMES", "AuditLog", "audit_cli", "audit_path"]

OUTCOMES = ("ok", "refused", "failed")
_PART = re.compile(r"part-(\d{8})\.parquet$")


def audit_path(env: Mapping[str, str] | None = None, *, near: Path | None = None) -> Path:
    """``WORKBENCH_AUDIT_LOG``, else ``audit.jsonl`` beside ``near`` (the lake), else ``data/audit.jsonl``."""
    env = os.environ if env is None else env
    if env.get("WORKBENCH_AUDIT_LOG"):
        return Path(env["WORKBENCH_AUDIT_LOG"])
    return (near.parent if near is not None else Path("data")) / "audit.jsonl"


class AuditLog:
    """An append-only JSONL file of audit records (see the module's docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(
        self,
        user: User | None,
        action: str,
        *,
        what: str = "",
        before: Any = None,
        after: Any = None,
        outcome: str = "ok",
        client: str = "",
        detail: str = "",
        who: str | None = None,
    ) -> dict[str, Any]:
        """Append one record and return it (``who`` names someone not signed in, e.g. a failed login)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome: expected one of {OUTCOMES}, not {outcome!r}")
        row: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": user.name if user is not None else who,
            "role": user.role if user is not None else None,
            "via": user.via if user is not None else None,
            "action": action,
            "what": what,
            "outcome": outcome,
            "before": before,
            "after": after,
            "client": client,
            "detail": detail,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                row = {"seq": self._count_lines() + 1, **row}
                os.write(fd, (json.dumps(row, default=str, ensure_ascii=False) + "\n").encode())
            finally:
                os.close(fd)  # closing releases the lock
        return row

    def _count_lines(self) -> int:
        count = 0
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
        return count

    def read(self, *, last: int | None = None) -> list[dict[str, Any]]:
        """The records, oldest first (``last``: only the newest ``last``, read in bounded memory)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            lines = deque(f, maxlen=last) if last is not None else list(f)
        return [json.loads(line) for line in lines if line.strip()]

    def to_lake(self, lake: Lake, *, output: str = "audit") -> int:
        """Copy the records not yet in ``lake``'s ``output`` into it; returns how many were written."""
        import polars as pl

        done = max((int(m.group(1)) for p in lake.files(output) if (m := _PART.search(p.name))), default=0)
        rows = [r for r in self.read() if r["seq"] > done]
        if not rows:
            return 0
        frame = pl.DataFrame(
            [
                {
                    **{k: r.get(k) for k in ("seq", "who", "role", "via", "action", "what", "outcome", "client")},
                    "detail": r.get("detail") or "",
                    "before": json.dumps(r.get("before"), default=str),
                    "after": json.dumps(r.get("after"), default=str),
                    "ts": datetime.fromisoformat(r["at"]),
                }
                for r in rows
            ],
            schema={
                "seq": pl.Int64,
                "who": pl.String,
                "role": pl.String,
                "via": pl.String,
                "action": pl.String,
                "what": pl.String,
                "outcome": pl.String,
                "client": pl.String,
                "detail": pl.String,
                "before": pl.String,
                "after": pl.String,
                "ts": pl.Datetime("ms", "UTC"),
            },
        )
        lake.write(output, frame, epoch=rows[-1]["seq"], time="ts")
        return len(rows)


def audit_cli(
    action: str, what: str, *, folder: str | Path, after: Any = None, outcome: str = "ok", detail: str = ""
) -> None:
    """Append a command's ``action`` (``backup``, ``restore``, ``export``) by the user running it.

    Whoever runs the command on the host can read the files anyway: they are recorded
    as themselves (``via: cli``, role ``admin``), in ``WORKBENCH_AUDIT_LOG``, else in
    ``audit.jsonl`` of ``folder`` (the run folder backed up or restored into, the lake
    exported from), so a backup carries the trail of its folder.
    """
    import getpass

    from workbench.security.roles import User

    path = Path(os.environ.get("WORKBENCH_AUDIT_LOG") or Path(folder) / "audit.jsonl")
    user = User(getpass.getuser(), "admin", via="cli")
    AuditLog(path).record(user, action, what=what, after=after, outcome=outcome, detail=detail)
