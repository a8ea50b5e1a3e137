"""The outbox: a persisted notification log and one delivery thread per receiver.

Delivery guarantee: **at least once**, with repeats dropped by notification id, and
**retried while it matters**, as Alertmanager does:

- ``put`` (on the pipeline thread) appends ``enqueue`` to the log (fsync'd); it never
  waits for a delivery.
- A delivery thread per receiver sends its due notifications in the order they were
  enqueued (the notifier retries quickly itself). A failed try is logged ``retry`` with
  the time of the next one: capped exponential back-off (``retry_base`` doubled per
  try, at most ``retry_cap``), so after a restart the back-off goes on where it was.
- A **firing** notification is retried for as long as it takes: it is finished only
  when delivered, or when a later notification of its group (same receiver and
  ``group_key``) is delivered, which supersedes it.
- A **resolved** notification is retried for at most ``resolved_ttl`` (default 24 h)
  after it was enqueued; then it, and any older notification of its group still
  pending, is **given up** (``given_up`` counts them; the log says ``failed`` with the
  reason). A receiver holds at most ``max_pending`` notifications; past that the
  oldest are given up and counted too (memory is bounded).
- On start, every notification enqueued but not finished is delivered again. Ids
  already in the log are not enqueued twice, so a pipeline that replays batches after
  a restart (and so regenerates the same notification ids) sends nothing twice —
  except a notification whose delivery succeeded just before a crash, before
  ``delivered`` was written: that one is sent again (the at-least-once window: at most
  one notification per receiver). Receivers can drop such a repeat by its id (the
  webhook's ``Idempotency-Key``).

Examples
--------
>>> import tempfile, pathlib
>>> from workbench.alerts.notifiers import JsonlNotifier
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> box = Outbox({"log": JsonlNotifier(d / "alerts.jsonl")}, log=d / "outbox.jsonl")
>>> box.start()
>>> box.put({"id": "log/g/1", "receiver": "log", "status": "firing"})
>>> box.drain(5), box.stats()["delivered"]
(True, 1)
>>> box.close()
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.alerts.notifiers import Notifier, NotifyError, encode
from workbench.clock import Clock, SystemClock
from workbench.errors import ConfigError

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    """Deliver notifications to named notifiers, off the pipeline thread, at least once.

    Parameters
    ----------
    notifiers
        Receiver name → notifier.
    log
        Path of the notification log (JSON lines: enqueue / retry / delivered / failed).
    retry_base, retry_cap
        Seconds before the second try of a notification, doubled per failed try, at most ``retry_cap``.
    resolved_ttl
        Seconds a resolved notification is retried before it is given up.
    max_pending
        Notifications pending per receiver at most; the oldest beyond it are given up.
    keep_ids
        Finished ids remembered (to drop repeats). Once the log holds twice as many
        finished entries it is compacted — rewritten atomically with the pending
        notifications and the latest ``keep_ids`` finished ids — so it stays bounded.
    poll
        Real seconds a delivery thread waits when nothing is due (it looks at the
        injected clock again then).
    clock
        Injected clock (timestamps in the log, when retries are due).
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        *,
        log: str | Path,
        retry_base: float = 5.0,
        retry_cap: float = 300.0,
        resolved_ttl: float = 86_400.0,
        max_pending: int = 10_000,
        keep_ids: int = 50_000,
        poll: float = 0.05,
        clock: Clock | None = None,
    ) -> None:
        if retry_base <= 0 or retry_cap < retry_base or resolved_ttl <= 0 or max_pending <= 0:
            raise ConfigError(
                "outbox: retry_base > 0, retry_cap >= retry_base, resolved_ttl > 0 and max_pending > 0, not "
                f"{retry_base}, {retry_cap}, {resolved_ttl}, {max_pending}"
            )
        self.notifiers = dict(notifiers)
        self.path = Path(log)
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.resolved_ttl = resolved_ttl
        self.max_pending = max_pending
        self.keep_ids = keep_ids
        self.poll = poll
        self._finished: list[str] = []  # finished ids, oldest first (what compaction keeps the tail of)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._done: set[str] = set()
        self._pending: dict[str, dict[str, Any]] = {}  # id → message, in enqueue order
        self._meta: dict[str, dict[str, Any]] = {}  # id → {"at": enqueued (s), "tries": n, "next": due (s)}
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in self.notifiers}  # set by put: deliver at once
        self.counts = {"enqueued": 0, "delivered": 0, "retries": 0, "superseded": 0, "given_up": 0, "duplicates": 0}
        self.counts.update(failed=0, redelivered=0)  # failed: given up or no such receiver
        self._load()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    # -- the log --------------------------------------------------------------------
    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    log.warning("outbox %s: skipping a torn line at the end of the log", self.path)
                    continue
                nid, op = entry["id"], entry["op"]
                self._seen.add(nid)
                if op == "enqueue":
                    self._pending[nid] = entry["message"]
                    self._meta[nid] = {
                        "at": _seconds(entry.get("at"), self._now()),
                        "tries": int(entry.get("tries", 0)),
                        "next": _seconds(entry.get("next"), 0.0),
                    }
                elif op == "retry":
                    if nid in self._meta:
                        self._meta[nid].update(tries=int(entry["tries"]), next=_seconds(entry["next"], 0.0))
                else:
                    self._done.add(nid)
                    self._finished.append(nid)
                    self._pending.pop(nid, None)
                    self._meta.pop(nid, None)
        self.counts["redelivered"] = len(self._pending)
        if len(self._finished) > 2 * self.keep_ids:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the log: pending enqueues (with their retry state) plus the latest ``keep_ids`` finished ids."""
        import tempfile

        keep = self._finished[-self.keep_ids :]
        tmp = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".outbox-", delete=False)  # noqa: SIM115
        with tmp as f:
            for nid in keep:
                f.write(encode({"op": "seen", "id": nid}) + b"\n")
            for nid, message in self._pending.items():
                m = self._meta[nid]
                entry = {"op": "enqueue", "id": nid, "at": _iso(m["at"]), "tries": m["tries"], "next": _iso(m["next"])}
                f.write(encode({**entry, "message": message}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp.name, self.path)
        self._finished = list(keep)
        self._seen = set(keep) | set(self._pending)
        self._done = set(keep)
        self.counts["compactions"] = self.counts.get("compactions", 0) + 1

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(encode(entry) + b"\n")
            f.flush()
            os.fsync(f.fileno())

    # -- running ----------------------------------------------------------------------
    def start(self) -> None:
        """Start one delivery thread per receiver; what the log has pending is delivered again."""
        if self._threads:
            return
        self._stop.clear()
        with self._lock:
            for nid, message in list(self._pending.items()):
                if message.get("receiver") not in self.notifiers:
                    self.counts["failed"] += 1
                    self._finish(nid, "failed", error=f"no receiver {message.get('receiver')!r}")
        for name in self.notifiers:
            t = threading.Thread(target=self._deliver_loop, args=(name,), name=f"wb-outbox-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def put(self, message: dict[str, Any]) -> None:
        """Persist one notification (``id`` and ``receiver`` required) for delivery; never blocks on delivery."""
        nid, receiver = message.get("id"), message.get("receiver")
        if not nid or not receiver:
            raise ConfigError(f"outbox: a notification needs an id and a receiver, not {sorted(message)}")
        with self._lock:
            if nid in self._seen:
                self.counts["duplicates"] += 1
                return
            self._seen.add(nid)
            now = self._now()
            self._append({"op": "enqueue", "id": nid, "at": _iso(now), "message": message})
            self.counts["enqueued"] += 1
            self._pending[nid] = message
            self._meta[nid] = {"at": now, "tries": 0, "next": 0.0}
            if receiver not in self.notifiers:
                self.counts["failed"] += 1
                self._finish(nid, "failed", error=f"no receiver {receiver!r}; receivers: {sorted(self.notifiers)}")
                return
            self._wake[receiver].set()
            mine = [k for k, m in self._pending.items() if m["receiver"] == receiver]
            for old in mine[: max(0, len(mine) - self.max_pending)]:
                self._give_up(old, f"more than max_pending={self.max_pending} notifications pending for {receiver!r}")

    def _finish(self, nid: str, op: str, **extra: Any) -> None:
        """Log ``delivered`` or ``failed`` and forget the notification (lock held)."""
        self._append({"op": op, "id": nid, "at": _iso(self._now()), **extra})
        self._done.add(nid)
        self._finished.append(nid)
        self._pending.pop(nid, None)
        self._meta.pop(nid, None)
        if op == "delivered":
            self.counts["delivered"] += 1
        if len(self._finished) > 2 * self.keep_ids:
            self._compact()
        self._idle.notify_all()

    def _give_up(self, nid: str, why: str) -> None:
        log.warning("outbox: gave up notification %s: %s", nid, why)
        self.counts["given_up"] += 1
        self.counts["failed"] += 1
        self._finish(nid, "failed", error=f"given up: {why}")

    def _older_of_group(self, message: dict[str, Any]) -> list[str]:
        """Pending notifications enqueued before ``message`` for its receiver and group (lock held)."""
        group = message.get("group_key")
        if group is None or message["id"] not in self._pending:
            return []
        out = []
        for nid, m in self._pending.items():
            if nid == message["id"]:
                break
            if m.get("group_key") == group and m["receiver"] == message["receiver"]:
                out.append(nid)
        return out

    def _next_due(self, receiver: str) -> dict[str, Any] | None:
        """The oldest notification of ``receiver`` due now; expired resolutions are given up (lock held)."""
        now = self._now()
        for nid, message in list(self._pending.items()):
            if message["receiver"] != receiver or nid not in self._pending:
                continue
            meta = self._meta[nid]
            if message.get("status") == "resolved" and now - meta["at"] > self.resolved_ttl:
                for old in self._older_of_group(message):
                    self._give_up(old, "its group resolved and the resolution expired")
                self._give_up(nid, f"resolved, and undelivered for more than resolved_ttl={self.resolved_ttl:g} s")
                continue
            if meta["next"] <= now:
                return message
        return None

    def _deliver_loop(self, receiver: str) -> None:
        notifier = self.notifiers[receiver]
        while not self._stop.is_set():
            with self._lock:
                message = self._next_due(receiver)
            if message is None:
                self._wake[receiver].wait(self.poll)
                self._wake[receiver].clear()
                continue
            try:
                notifier.notify(message)
                error = None
            except NotifyError as exc:
                error = str(exc)
            with self._lock:
                nid = message["id"]
                if nid not in self._pending:
                    continue
                if error is None:
                    older = self._older_of_group(message)  # before it leaves the pending list
                    self._finish(nid, "delivered", receiver=receiver)
                    for old in older:  # a newer state of the group is out
                        self.counts["superseded"] += 1
                        self._finish(old, "failed", error=f"superseded by {nid}")
                    continue
                meta = self._meta[nid]
                meta["tries"] += 1
                meta["next"] = self._now() + min(self.retry_cap, self.retry_base * 2 ** (meta["tries"] - 1))
                self.counts["retries"] += 1
                self._append({"op": "retry", "id": nid, "tries": meta["tries"], "next": _iso(meta["next"])})
                log.warning("outbox: %s (try %d; again at %s)", error, meta["tries"], _iso(meta["next"]))

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` real seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
            return True

    def pending(self) -> list[dict[str, Any]]:
        """Notifications enqueued and not yet finished."""
        with self._lock:
            return list(self._pending.values())

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, delivered, retries, superseded, given_up, failed, duplicates, redelivered, pending."""
        with self._lock:
            return {**self.counts, "pending": len(self._pending)}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the delivery threads (waiting up to ``timeout`` for the current deliveries)."""
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        for notifier in self.notifiers.values():
            notifier.close()


def _iso(seconds: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _seconds(value: str | None, default: float) -> float:
    return datetime.fromisoformat(value).timestamp() if value else default
