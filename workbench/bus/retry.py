"""Exponential backoff: one value, one loop, shared by notifiers and publishers.

A :class:`Backoff` is a frozen value (how many retries, the first delay, the growth
factor and the cap); :func:`call_with_retries` runs a callable until it succeeds, the
error is not retryable, or the retries are spent. Delays go through an injected clock's
``sleep``, so tests with a :class:`~workbench.clock.ManualClock` never wait. There is
no jitter: delays are deterministic (our senders are few, so herds are not a concern).

Examples
--------
>>> list(Backoff(retries=4, base=0.5, cap=1.5).delays())
[0.5, 1.0, 1.5, 1.5]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from workbench.clock import Clock, SystemClock
from workbench.errors import ConfigError

__all__ = ["Backoff", "call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Retry schedule: ``retries`` further attempts after the first, delays ``base·factorⁱ`` capped.

    Parameters
    ----------
    retries
        Attempts after the first one (0: try once).
    base
        Seconds before the first retry.
    factor
        Growth of the delay between retries.
    cap
        Longest delay, in seconds.
    """

    retries: int = 5
    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"backoff: retries must be >= 0, not {self.retries}")
        if self.base < 0:
            raise ConfigError(f"backoff: base must be >= 0 seconds, not {self.base}")
        if self.factor < 1:
            raise ConfigError(f"backoff: factor must be >= 1, not {self.factor}")
        if self.cap < self.base:
            raise ConfigError(f"backoff: cap must be >= base ({self.base}), not {self.cap}")

    def delays(self) -> Iterator[float]:
        """The ``retries`` delays, in seconds."""
        for i in range(self.retries):
            yield min(self.cap, self.base * self.factor**i)


def call_with_retries(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    retryable: Callable[[Exception], bool],
    clock: Clock | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """Run ``call`` until it returns; retry errors ``retryable`` accepts, after each delay.

    The last error (or the first non-retryable one) propagates unchanged: the caller
    wraps it in its own :class:`~workbench.errors.WorkbenchError` naming what failed.

    Examples
    --------
    >>> from workbench.clock import ManualClock
    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise ConnectionError("refused")
    ...     return "ok"
    >>> clock = ManualClock()
    >>> call_with_retries(flaky, backoff=Backoff(retries=5, base=1.0), retryable=lambda e: True, clock=clock)
    'ok'
    >>> len(tries), clock.monotonic()
    (3, 3.0)
    """
    clock = clock or SystemClock()
    delays = backoff.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            delay = next(delays, None) if retryable(exc) else None
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            clock.sleep(delay)
