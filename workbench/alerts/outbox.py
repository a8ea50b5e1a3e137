"""The outbox: a persisted notification log and one delivery thread per receiver.

Delivery guarantee: **at least once**, with repeats dropped by notification id.

- ``put`` (on the pipeline thread) appends ``enqueue`` to the log (fsync'd) and hands
  the notification to its receiver's bounded in-memory queue; it never waits for a
  delivery. When a queue is full the notification stays pending in the log and is
  picked up from there when the queue has room: memory is bounded, nothing is lost.
- A delivery thread per receiver calls its notifier (which retries with backoff),
  then appends ``delivered`` (or ``failed`` after ``rounds`` rounds of retries).
- On start, every notification enqueued but neither delivered nor failed is
  delivered again. Ids already in the log are not enqueued twice, so a pipeline that
  replays batches after a restart (and so regenerates the same notification ids)
  sends nothing twice — except a notification whose delivery succeeded just before a
  crash, before ``delivered`` was written: that one is sent again (the at-least-once
  window: at most one notification per receiver). Receivers can drop such a repeat by
  its id (the webhook's ``Idempotency-Key``).

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
import queue
import threading
from collections.abc import Mapping
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
        Path of the notification log (JSON lines: enqueue / delivered / failed).
    max_queue
        In-memory notifications per receiver; more stay pending in the log.
    rounds
        Times a notification is retried (each with the notifier's own retries) before
        it is logged ``failed``.
    round_wait
        Seconds between rounds (a closing outbox stops waiting at once).
    keep_ids
        Finished ids remembered (to drop repeats). Once the log holds twice as many
        finished entries it is compacted — rewritten atomically with the pending
        notifications and the latest ``keep_ids`` finished ids — so it stays bounded.
    clock
        Injected clock (timestamps in the log, waits between rounds).
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        *,
        log: str | Path,
        max_queue: int = 1000,
        rounds: int = 3,
        round_wait: float = 30.0,
        keep_ids: int = 50_000,
        clock: Clock | None = None,
    ) -> None:
        if max_queue <= 0 or rounds <= 0:
            raise ConfigError(f"outbox: max_queue and rounds must be > 0, not {max_queue} and {rounds}")
        self.notifiers = dict(notifiers)
        self.path = Path(log)
        self.max_queue = max_queue
        self.rounds = rounds
        self.round_wait = round_wait
        self.keep_ids = keep_ids
        self._finished: list[str] = []  # finished ids, oldest first (what compaction keeps the tail of)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._done: set[str] = set()
        self._pending: dict[str, dict[str, Any]] = {}
        self._queued: set[str] = set()
        self._queues: dict[str, queue.Queue[dict[str, Any] | None]] = {}
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self.counts = {"enqueued": 0, "delivered": 0, "failed": 0, "duplicates": 0, "overflow": 0, "redelivered": 0}
        self._load()

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
                nid = entry["id"]
                if entry["op"] == "enqueue":
                    self._seen.add(nid)
                    self._pending[nid] = entry["message"]
                else:
                    self._seen.add(nid)
                    self._done.add(nid)
                    self._finished.append(nid)
                    self._pending.pop(nid, None)
        self.counts["redelivered"] = len(self._pending)
        if len(self._finished) > 2 * self.keep_ids:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the log: pending enqueues plus the latest ``keep_ids`` finished ids (lock held or not started)."""
        import tempfile

        keep = self._finished[-self.keep_ids :]
        tmp = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".outbox-", delete=False)  # noqa: SIM115
        with tmp as f:
            for nid in keep:
                f.write(encode({"op": "seen", "id": nid}) + b"\n")
            for nid, message in self._pending.items():
                f.write(encode({"op": "enqueue", "id": nid, "message": message}) + b"\n")
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
        """Start one delivery thread per receiver; re-deliver what the log has pending."""
        if self._threads:
            return
        self._stop.clear()
        for name in self.notifiers:
            self._queues[name] = queue.Queue(self.max_queue)
            t = threading.Thread(target=self._deliver_loop, args=(name,), name=f"wb-outbox-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        with self._lock:
            for message in list(self._pending.values()):
                self._offer(message)

    def put(self, message: dict[str, Any]) -> None:
        """Persist and queue one notification (``id`` and ``receiver`` required); never blocks on delivery."""
        nid, receiver = message.get("id"), message.get("receiver")
        if not nid or not receiver:
            raise ConfigError(f"outbox: a notification needs an id and a receiver, not {sorted(message)}")
        with self._lock:
            if nid in self._seen:
                self.counts["duplicates"] += 1
                return
            self._seen.add(nid)
            self._append({"op": "enqueue", "id": nid, "at": self.clock.now().isoformat(), "message": message})
            self.counts["enqueued"] += 1
            self._pending[nid] = message
            self._offer(message)

    def _offer(self, message: dict[str, Any]) -> None:
        """Hand a pending notification to its queue, if it has room (lock held)."""
        nid, receiver = message["id"], message["receiver"]
        if nid in self._queued:
            return
        if receiver not in self.notifiers:
            self._finish(nid, "failed", error=f"no receiver {receiver!r}; receivers: {sorted(self.notifiers)}")
            return
        q = self._queues.get(receiver)
        if q is None:
            return  # not started: delivered on start
        try:
            q.put_nowait(message)
            self._queued.add(nid)
        except queue.Full:
            self.counts["overflow"] += 1

    def _finish(self, nid: str, op: str, **extra: Any) -> None:
        self._append({"op": op, "id": nid, "at": self.clock.now().isoformat(), **extra})
        self._done.add(nid)
        self._finished.append(nid)
        self._pending.pop(nid, None)
        self._queued.discard(nid)
        self.counts["delivered" if op == "delivered" else "failed"] += 1
        if len(self._finished) > 2 * self.keep_ids:
            self._compact()
        self._idle.notify_all()

    def _deliver_loop(self, receiver: str) -> None:
        notifier, q = self.notifiers[receiver], self._queues[receiver]
        while True:
            message = q.get()
            if message is None:
                return
            error = None
            for n in range(self.rounds):
                try:
                    notifier.notify(message)
                    error = None
                    break
                except NotifyError as exc:
                    error = str(exc)
                    log.warning("outbox: %s (round %d of %d)", exc, n + 1, self.rounds)
                    if n + 1 < self.rounds and self._stop.wait(self.round_wait):
                        break
            with self._lock:
                if error is None:
                    self._finish(message["id"], "delivered", receiver=receiver)
                elif self._stop.is_set():
                    self._queued.discard(message["id"])  # still pending in the log: delivered on restart
                else:
                    self._finish(message["id"], "failed", receiver=receiver, error=error)
                # room again: pick up what overflowed into the log
                for pending in list(self._pending.values()):
                    if pending["receiver"] == receiver and pending["id"] not in self._queued and not q.full():
                        self._offer(pending)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` seconds pass (False)."""
        import time

        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
            return True

    def pending(self) -> list[dict[str, Any]]:
        """Notifications enqueued and not yet delivered or failed."""
        with self._lock:
            return list(self._pending.values())

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, delivered, failed, duplicates (dropped by id), overflow, redelivered, pending."""
        with self._lock:
            return {**self.counts, "pending": len(self._pending)}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the delivery threads (waiting up to ``timeout`` for the current deliveries)."""
        self._stop.set()
        for q in self._queues.values():
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
            q.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        with self._lock:
            self._queued.clear()
        for notifier in self.notifiers.values():
            notifier.close()
