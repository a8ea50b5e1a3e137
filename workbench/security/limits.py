"""Rate limits and lock-outs, bounded in memory (the oldest keys are forgotten first).

Examples
--------
>>> t = [0.0]
>>> rl = RateLimiter(3, per_s=60, clock=lambda: t[0])
>>> [rl.hit("10.0.0.1") for _ in range(4)]
[True, True, True, False]
>>> t[0] = 61.0; rl.hit("10.0.0.1")
True
>>> lock = Lockout(2, window_s=60, lock_s=300, clock=lambda: t[0])
>>> lock.failed("ana"), lock.failed("ana"), lock.locked("ana")
(False, True, True)
>>> t[0] += 301; lock.locked("ana")
False
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["Lockout", "RateLimiter"]


class RateLimiter:
    """At most ``limit`` hits per key in any ``per_s`` seconds (a sliding window); at most ``max_keys`` keys held."""

    def __init__(
        self, limit: int, *, per_s: float = 60.0, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.per_s, self.max_keys, self.clock = limit, per_s, max_keys, clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count a hit of ``key``; False when it is over the limit (the hit is not counted then)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.per_s:
                hits.popleft()
            ok = len(hits) < self.limit
            if ok:
                hits.append(now)
            self._hits[key] = hits
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            return ok

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may hit again (0 if it may now)."""
        with self._lock:
            hits = self._hits.get(key)
            if not hits or len(hits) < self.limit:
                return 0
            return max(1, int(hits[0] + self.per_s - self.clock()) + 1)


class Lockout:
    """A name is locked for ``lock_s`` after ``failures`` failed attempts within ``window_s``."""

    def __init__(
        self,
        failures: int = 10,
        *,
        window_s: float = 900.0,
        lock_s: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures, self.lock_s = failures, lock_s
        self._recent = RateLimiter(failures, per_s=window_s, max_keys=max_keys, clock=clock)
        self._until: OrderedDict[str, float] = OrderedDict()
        self.max_keys, self.clock = max_keys, clock
        self._lock = threading.Lock()

    def failed(self, name: str) -> bool:
        """Count a failed attempt; True when the name is now locked."""
        if not self._recent.hit(name) or self._recent.retry_after(name):
            with self._lock:
                self._until[name] = self.clock() + self.lock_s
                while len(self._until) > self.max_keys:
                    self._until.popitem(last=False)
            return True
        return False

    def locked(self, name: str) -> bool:
        """Whether ``name`` is locked now."""
        with self._lock:
            until = self._until.get(name)
            if until is None:
                return False
            if until <= self.clock():
                del self._until[name]
                return False
            return True

    def succeeded(self, name: str) -> None:
        """A successful attempt: nothing to do but forget nothing (failures still count in their window)."""
