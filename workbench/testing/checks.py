"""Check batteries: the contract every detector and every pipeline node keeps.

Run them on your own components as the test suite runs them on Workbench's (like
river's ``utils.estimator_checks``): each check raises ``AssertionError`` with a
message naming the component and what broke.

Examples
--------
>>> from workbench.models.detectors import RobustZScore
>>> check_detector(RobustZScore)
>>> from workbench.operators.nodes import dedupe
>>> from workbench.testing import server_metrics_frame
>>> frame = server_metrics_frame(300, hosts=3)
>>> check_operator(lambda up: dedupe(up, "event_id"), [frame[:150], frame[150:], frame[:50]])
"""

from __future__ import annotations

import inspect
import math
import pickle
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from streamz import Stream

from workbench.models.detectors import Detector, score_stream
from workbench.operators.base import Operator

__all__ = ["DETECTOR_CHECKS", "check_detector", "check_operator"]

#: the row of the spike in :func:`_rows`
SPIKE = 900


def _rows(n: int = 1000, seed: int = 0) -> list[dict[str, float]]:
    """A smooth noisy series with one spike at row :data:`SPIKE`."""
    rng = np.random.default_rng(seed)
    values = 10 + np.sin(np.arange(n) / 20) + rng.normal(0, 0.1, n)
    if n > SPIKE:
        values[SPIKE] += 8
    return [{"value": float(v)} for v in values]


def _name(make: Callable[..., Detector]) -> str:
    return getattr(make, "__name__", repr(make))


# -- detectors -------------------------------------------------------------------------
def check_scores_in_range(make: Callable[..., Detector]) -> None:
    """Scores are in [0, 1], never NaN; the spike stands out; the first row is warm-up (0)."""
    scores = score_stream(make(), _rows())
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores), f"{_name(make)}: a score outside [0, 1]"
    assert max(scores[SPIKE : SPIKE + 11]) == max(scores[600:]) > 0.3, f"{_name(make)}: the spike does not stand out"
    assert scores[0] == 0.0, f"{_name(make)}: the first row scored {scores[0]}, not 0 (warm-up)"


def check_awkward_series(make: Callable[..., Detector]) -> None:
    """Flat lines, steps, Cauchy noise and NaNs keep scores in [0, 1]."""
    flat = [{"value": 5.0}] * 700
    steps = [{"value": float(i // 100)} for i in range(700)]
    wild = [{"value": float(v)} for v in np.random.default_rng(3).standard_cauchy(700) * 1e6]
    for rows in (flat, steps, wild, [{"value": math.nan}] * 5 + flat[:50]):
        scores = score_stream(make(), rows)
        assert all(0.0 <= s <= 1.0 for s in scores), f"{_name(make)}: a score outside [0, 1] on an awkward series"


def check_clone(make: Callable[..., Detector]) -> None:
    """``clone()`` is a fresh detector with the same parameters."""
    det = make()
    score_stream(det, _rows(100))
    twin = det.clone()
    assert repr(twin) == repr(det), f"{_name(make)}: clone {twin!r} != {det!r}"
    assert score_stream(twin, _rows()) == score_stream(make(), _rows()), f"{_name(make)}: a clone is not fresh"


def check_snapshot_restore(make: Callable[..., Detector]) -> None:
    """Restoring a snapshot gives the same next scores, and a snapshot never aliases live state."""
    rows = _rows()
    det = make()
    score_stream(det, rows[:850])
    state = det.snapshot()
    a = score_stream(det, rows[850:])
    other = make()
    other.restore(state)
    assert score_stream(other, rows[850:]) == a, f"{_name(make)}: restore does not give the same next scores"
    score_stream(det, rows[:10])
    again = make()
    again.restore(state)
    assert score_stream(again, rows[850:]) == a, f"{_name(make)}: the snapshot aliases live state"


def check_inputs_untouched(make: Callable[..., Detector]) -> None:
    """Inputs are not mutated, and a second run reproduces the first."""
    rows = _rows()
    copy = [dict(r) for r in rows]
    first = score_stream(make(), rows)
    assert rows == copy, f"{_name(make)}: the input rows were mutated"
    assert score_stream(make(), rows) == first, f"{_name(make)}: two runs on the same rows differ"


def check_seed(make: Callable[..., Detector]) -> None:
    """A ``seed`` argument, when there is one, is the only randomness."""
    if "seed" not in inspect.signature(make).parameters:
        return
    det, rows = make(), _rows()

    def run(seed: int) -> list[float]:
        return score_stream(type(det)(**{**det._params, "seed": seed}), rows)

    assert run(7) == run(7), f"{_name(make)}: the same seed gives different scores"
    assert run(8) != run(7), f"{_name(make)}: the seed changes nothing"


def check_bounded_state(make: Callable[..., Detector]) -> None:
    """State stays bounded on a long stream: the second half adds under 10 %."""
    det = make()
    rows = _rows(6000, seed=1)
    score_stream(det, rows[:3000])
    size = len(pickle.dumps(det.snapshot()))
    score_stream(det, rows[3000:])
    after = len(pickle.dumps(det.snapshot()))
    assert after < 1.1 * size, f"{_name(make)}: state grew from {size} to {after} bytes"


def _documented(doc: str) -> set[str]:
    section = doc.split("Parameters\n    ----------\n", 1)[1].split("\n\n    ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if re.match(r"    \S", line):
            names.update(n.strip() for n in line.split(","))
    return names


def check_arguments(make: Callable[..., Detector]) -> None:
    """Every constructor argument is documented, kept under its name, and numeric ones have bounds."""
    params = inspect.signature(make).parameters
    documented = _documented(make.__doc__ or "")
    det = make()
    for name, param in params.items():
        assert name in documented, f"{_name(make)}: {name} is not in the Parameters section"
        assert hasattr(det, name), f"{_name(make)}: argument {name} is not kept as the attribute {name}"
        default = param.default
        if isinstance(default, int | float) and not isinstance(default, bool):
            low, high = make.bounds[name]  # type: ignore[attr-defined]
            assert low <= default <= high, f"{_name(make)}.{name}={default} outside {make.bounds[name]}"  # type: ignore[attr-defined]


#: every check of :func:`check_detector`, in the order it runs them
DETECTOR_CHECKS: tuple[Callable[[Callable[..., Detector]], None], ...] = (
    check_arguments,
    check_scores_in_range,
    check_awkward_series,
    check_clone,
    check_snapshot_restore,
    check_inputs_untouched,
    check_seed,
    check_bounded_state,
)


def check_detector(make: Callable[..., Detector]) -> None:
    """Run every detector check on ``make`` (a Detector class, or a factory with the class's signature).

    Scores in [0, 1] on plain and awkward series, the spike found, clone, snapshot and
    restore without aliasing, inputs untouched, the seed the only randomness, bounded
    state, and every argument documented, kept and bounded.
    """
    for check in DETECTOR_CHECKS:
        check(make)


# -- pipeline nodes --------------------------------------------------------------------
class _Run:
    """A node built on a fresh upstream, with its output and side outputs collected."""

    def __init__(self, make: Callable[[Stream], Operator]) -> None:
        self.head = Stream()
        self.node = make(self.head)
        assert isinstance(self.node, Operator), f"{self.node!r} is not an Operator"
        self.out: list[Any] = self.node.sink_to_list()
        self.side: dict[str, list[Any]] = {}
        for attr in ("rejects", "duplicates", "late", "drift"):
            stream = getattr(self.node, attr, None)
            if isinstance(stream, Stream):
                self.side[attr] = stream.sink_to_list()

    def feed(self, batches: Sequence[Any]) -> None:
        for batch in batches:
            self.head.emit(batch)

    def frames(self) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
        """Output and side outputs so far, each as one frame (in emit order)."""

        def one(items: list[Any]) -> pl.DataFrame:
            frames = [x for x in items if isinstance(x, pl.DataFrame) and x.height]
            return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

        return one(self.out), {k: one(v) for k, v in self.side.items()}


def _rows_of(x: Any) -> int:
    return x.height if isinstance(x, pl.DataFrame) else 0


def check_operator(
    make: Callable[[Stream], Operator],
    batches: Sequence[Any],
    *,
    more: Callable[[int], Sequence[Any]] | None = None,
    rounds: int = 5,
) -> None:
    """Run every node check on ``make`` (a function of an upstream ``Stream`` giving the node) fed ``batches``.

    - **snapshot/restore**: a node restored from a snapshot taken part-way emits what
      the original emits for the rest (output and side outputs), and the snapshot
      does not alias live state;
    - **inputs untouched**: no input frame is mutated;
    - **empty batch**: an empty frame raises nothing and emits no rows;
    - **side outputs counted**: every row sent to ``rejects``, ``duplicates`` or
      ``late`` is in the node's counters;
    - **bounded state**: fed ``rounds`` more rounds of input (``more(k)`` gives round
      ``k``, e.g. the batches moved later in event time; default: the same batches
      again), ``state_size`` stays within 10 % (plus 10) of its size after the first.
    """
    batches = list(batches)
    assert batches, "check_operator needs at least one batch"
    name = type(make(Stream())).__name__
    cut = max(1, len(batches) // 2)

    # snapshot / restore, and no aliasing
    whole = _Run(make)
    whole.feed(batches[:cut])
    state = whole.node.snapshot()
    seen = len(whole.out), {k: len(v) for k, v in whole.side.items()}
    whole.feed(batches[cut:])
    restored = _Run(make)
    restored.node.restore(state)
    restored.feed(batches[cut:])
    out, side = restored.frames()
    tail = _Run(make)  # what `whole` emitted after the snapshot
    tail.out = whole.out[seen[0] :]
    tail.side = {k: v[seen[1][k] :] for k, v in whole.side.items()}
    want_out, want_side = tail.frames()
    assert out.equals(want_out), f"{name}: after restore the output differs from the original's"
    for key, frame in want_side.items():
        assert side[key].equals(frame), f"{name}: after restore the {key} side output differs"
    again = _Run(make)
    again.node.restore(state)
    again.feed(batches[cut:])
    assert again.frames()[0].equals(want_out), f"{name}: the snapshot aliases live state"

    # inputs untouched
    copies = [b.clone() if isinstance(b, pl.DataFrame) else b for b in batches]
    _Run(make).feed(batches)
    for before, after in zip(copies, batches, strict=True):
        if isinstance(before, pl.DataFrame):
            assert before.equals(after), f"{name}: an input frame was mutated"

    # empty batch
    run = _Run(make)
    first = next((b for b in batches if isinstance(b, pl.DataFrame)), None)
    if first is not None:
        run.head.emit(first.head(0))
        assert sum(_rows_of(x) for x in run.out) == 0, f"{name}: an empty batch emitted rows"

    # side outputs counted
    run = _Run(make)
    run.feed(batches)
    node = run.node
    counters = {
        "rejects": node.metrics.rejected,
        "duplicates": getattr(node, "duplicate_count", None),
        "late": getattr(node, "late_count", None),
    }
    for key, items in run.side.items():
        count = counters.get(key)
        if count is not None:
            emitted = sum(_rows_of(x) for x in items)
            assert emitted == count, f"{name}: {emitted} rows went to {key}, but the node counts {count}"

    # bounded state
    run = _Run(make)
    run.feed(batches)
    size = run.node.state_size
    assert isinstance(size, int), f"{name}: state_size is {size!r}, not an int"
    assert size >= 0, f"{name}: state_size is {size}"
    for k in range(1, rounds + 1):
        run.feed(more(k) if more is not None else batches)
    grown = run.node.state_size
    assert grown <= 1.1 * size + 10, f"{name}: state grew from {size} to {grown} in {rounds} rounds"
