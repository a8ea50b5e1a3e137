"""A contextual anomaly detector: how new is the context a value arrives in.

The algorithm is Mikhail Smirnov's Contextual Anomaly Detector, open-source edition
(CAD-OSE, the second-best detector on NAB's scoreboard), implemented here from its
description: each value is quantised into a few bins and written as binary *facts*;
a memory of *contexts* — (left facts, right facts) pairs, the left side being the last
step's facts plus the "neurons" of the contexts that were active then — predicts the
next facts. A value scores by how much of its context is unfamiliar:
``(1 − share of the selected contexts that came true + share of new contexts) / 2``,
and 0 when the facts were predicted. After a score of ``base_threshold`` or more the
detector rests for ``rest`` rows (scores 0), so one event raises one alarm.

CAD-OSE as run in NAB is handed each file's minimum and maximum before it starts (NAB
gives every detector the file's range). Online, the future range is unknown, so this
detector quantises over the range *seen so far*: when a value leaves it, the memory is
rebuilt over the wider range from the last ``history`` values (replayed, not scored)
and the new value is scored against it. Pass ``value_range`` to fix the range up front
instead (how NAB runs CAD-OSE; docs/BENCHMARKS.md has both scores).

Four rules score 1 what a memory of contexts soon finds familiar: a value beyond the range
seen so far (``spatial``), and the shape rules of :mod:`workbench.models.shape` — a flat
line longer than any before (``flat``), a sustained new level (``level``) and, for a
periodic series, a break in its season (``seasonal``).

State is bounded: at most ``history`` values are kept, and the memory is rebuilt from
them when it holds ``max_contexts`` contexts (to under half as many: a replay that fills
half of it starts afresh from where it got to).

Examples
--------
>>> from workbench.models.detectors import score_stream
>>> rows = [{"v": float(i % 12)} for i in range(1200)]
>>> rows[1000] = {"v": 5.5}  # out of step: the seasonal shape breaks for one row
>>> scores = score_stream(ContextDetector(), rows)
>>> scores[1000] > 0.75, max(scores[600:1000]) < 0.5
(True, True)
"""

from __future__ import annotations

import math
from collections import Counter, deque
from itertools import chain, combinations_with_replacement
from typing import Any, ClassVar

import numpy as np

from workbench.models import context_state
from workbench.models.detectors import Detector
from workbench.models.shape import FlatLine, LevelShift, SeasonalBreak, beyond
from workbench.native import context as native_context
from workbench.native.context import ContextKernel

__all__ = ["ContextDetector", "ContextMemory"]

_SENSOR = 1 << 16  # facts of the value's bits: _SENSOR + 2·bit + (0|1)
_NEURON = 1 << 31  # facts of active contexts: _NEURON + context id


class ContextMemory:
    """CAD's context memory for one stream of fact sets (left and right semi-contexts, contexts).

    A context is ``[selected, matched, active, right facts, zero level, left hash, right hash]``:
    ``matched / selected`` is how often its prediction came true.
    """

    def __init__(self, max_left: int = 7) -> None:
        self.max_left = max_left
        self.index: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})  # fact → semi-contexts having it
        self.keys: tuple[dict[tuple[int, ...], int], dict[tuple[int, ...], int]] = ({}, {})
        self.facts: tuple[list[tuple[int, ...]], list[tuple[int, ...]]] = ([], [])  # semi-context → its facts
        self.left_sets: list[frozenset[int]] = []  # left semi-context → its facts as a set
        self.links: list[dict[int, int]] = []  # left semi-context → {right semi-context: context}
        self.zero: list[dict[int, int]] = []  # the same, zero-level contexts only
        self.contexts: list[list[Any]] = []
        self.by_ends: dict[tuple[int, int], list[int]] = {}  # (smallest, largest fact) → left semi-contexts
        self.new_context: int | None = None
        self.left_group: tuple[int, ...] = ()
        self.left_full: list[int] = []  # left semi-contexts the last left group matched whole
        self.left_known = 0  # left semi-contexts there were when it was matched

    def __len__(self) -> int:
        return len(self.contexts)

    def _semi(self, side: int, facts: tuple[int, ...]) -> int:
        sid = self.keys[side].get(facts)
        if sid is None:
            sid = self.keys[side][facts] = len(self.facts[side])
            self.facts[side].append(facts)
            if side == 0:
                self.left_sets.append(frozenset(facts))
                self.links.append({})
                self.zero.append({})
                if facts:
                    self.by_ends.setdefault((facts[0], facts[-1]), []).append(sid)
            index = self.index[side]
            for f in facts:
                index.setdefault(f, []).append(sid)
        return sid

    def add(self, pairs: list[tuple[tuple[int, ...], tuple[int, ...]]], zero_level: bool = False) -> int:
        """Store new contexts; for one zero-level pair, 1 when it is new (0 when known, and marked zero-level)."""
        added = 0
        for left, right in pairs:
            lid = self._semi(0, left)
            links = self.links[lid]
            rid = self._semi(1, right)
            cid = links.get(rid)
            if cid is None:
                cid = links[rid] = len(self.contexts)
                self.contexts.append([0, 0, 0, right, zero_level, hash(left), hash(right)])
                added += 1
                if zero_level:
                    self.zero[lid][rid] = cid
                    self.new_context = cid
                    return 1
            elif zero_level:
                self.contexts[cid][4] = True
                self.zero[lid][rid] = cid
                return 0
        return added

    def _counts(self, side: int, facts: tuple[int, ...]) -> Counter[int]:
        index = self.index[side]
        return Counter(chain.from_iterable(index.get(f, ()) for f in facts))

    def step(self, facts: tuple[int, ...], max_active: int, predict: bool = True) -> tuple[set[int], float, float]:
        """Learn the step to ``facts`` (sorted); the facts predicted next, and the two anomaly shares.

        ``predict=False`` skips the prediction (an empty set comes back): a replay needs only its last.
        """
        unique: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        new_flag = False
        if self.left_group and facts:
            pair = (self.left_group, facts)
            unique.add(pair)
            new_flag = bool(self.add([pair], zero_level=True))
        # the right side: which contexts selected by the last left group came true
        right_counts = self._counts(1, facts)
        skip = self.new_context if self.new_context is not None else 0  # CAD-OSE never activates context 0
        active: list[tuple[int, int, int, int]] = []
        potential: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        selected = 0
        left_facts, right_facts, contexts, max_left = self.facts[0], self.facts[1], self.contexts, self.max_left
        left_set, fact_set = set(self.left_group), set(facts)
        if new_flag:  # a new zero-level context: partial matches of the last left group matter too
            known = self.left_known
            counts = self._counts(0, self.left_group)
            crossed = sorted((lid, n) for lid, n in counts.items() if lid < known)
        else:
            crossed = [(lid, len(left_facts[lid])) for lid in self.left_full]
        links, zeros, rget, keep_new = self.links, self.zero, right_counts.get, fact_set.__contains__
        for lid, count in crossed:
            if count == len(left_facts[lid]):  # the whole left side held: its contexts were selected
                for rid, cid in links[lid].items():
                    if cid == skip:
                        continue
                    context = contexts[cid]
                    rcount = rget(rid, 0)
                    rsize = len(right_facts[rid])
                    selected += 1
                    context[0] += rsize
                    if rcount:
                        context[1] += rcount
                        if rcount == rsize:
                            context[2] += 1
                            active.append((context[2], context[5], context[6], cid))
                        elif context[4] and new_flag and count <= max_left:
                            potential.append((left_facts[lid], tuple(filter(keep_new, right_facts[rid]))))
            elif count <= max_left and (zero := zeros[lid]):  # part of it held: zero-level contexts
                hits = [(cid, rid) for rid, cid in zero.items() if rid in right_counts and cid != skip]
                if hits:
                    hits.sort()
                    left = tuple(filter(left_set.__contains__, left_facts[lid]))
                    potential.extend((left, tuple(filter(keep_new, right_facts[rid]))) for _, rid in hits)
        self.new_context = None
        unique.update(potential)
        matched = len(active) / selected if selected else 0.0
        active.sort()
        neurons = [_NEURON + a[3] for a in active[-max_active:]]
        self.left_group = tuple(sorted(set(facts).union(neurons)))
        # the left side: store the new contexts, then predict from the contexts the new left group selects
        added = self.add(potential) if potential else 0
        group, ends = set(self.left_group), self.by_ends
        candidates = [ends[k] for k in combinations_with_replacement(self.left_group, 2) if k in ends]
        left_sets = self.left_sets
        self.left_full = sorted(lid for lid in chain.from_iterable(candidates) if left_sets[lid] <= group)
        self.left_known = len(left_facts)
        added += 1 if new_flag else 0
        novel = added / len(unique) if new_flag and unique else 0.0
        predicted: set[int] = set()
        if not predict:
            return predicted, matched, novel
        best, chosen = 0.0, []
        for lid in self.left_full:
            for cid in self.links[lid].values():
                c = contexts[cid]
                weight = c[1] / c[0] if c[0] > 0 else 0.0
                if weight > best:
                    best, chosen = weight, [c]
                elif weight == best:
                    chosen.append(c)
        for c in chosen:
            predicted.update(c[3])
        return predicted, matched, novel


class _Stream:
    """One feature's quantiser, memory, recent values and shape rules.

    ``memory`` is a :class:`ContextMemory` (with its last prediction in ``predicted``) or,
    where the library is built, a :class:`~workbench.native.context.ContextKernel` (which
    keeps its prediction itself). Pickled, a kernel is its state's bytes; unpickled where
    the kernel cannot be built, those bytes become a ``ContextMemory`` again.
    """

    def __init__(self, history: int, rules: tuple[FlatLine, LevelShift, SeasonalBreak]) -> None:
        self.recent: deque[float] = deque(maxlen=history)
        self.low = math.inf  # the range of the values seen
        self.high = -math.inf
        self.bin_low = math.inf  # the range the bins span
        self.bin_high = -math.inf
        self.memory: ContextMemory | ContextKernel | None = None
        self.predicted: set[int] = set()
        self.step = 1.0
        self.flat, self.level, self.seasonal = rules

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        if isinstance(self.memory, ContextKernel):
            state["memory"] = self.memory.dump()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        if isinstance(self.memory, bytes):
            if native_context.available():
                self.memory = ContextKernel.load(self.memory)
            else:
                self.memory, self.predicted, _ = context_state.unpack(self.memory)


class ContextDetector(Detector):
    """Contextual anomaly detector (the CAD-OSE algorithm), online: it quantises over the range seen so far.

    Parameters
    ----------
    bits
        Bits per value: ``2**bits`` bins over the range (CAD-OSE: 3).
    rest
        Rows scored 0 after a score of ``base_threshold`` or more.
    base_threshold
        The score that starts a rest.
    max_left
        Largest left semi-context learned from a partial match.
    max_active
        Active contexts fed back as the next step's neurons.
    history
        Values kept for rebuilding the memory when the range widens (or the memory is full).
    max_contexts
        Contexts held before the memory is rebuilt from ``history``.
    warm_up
        Rows scored 0 at the start while the memory learns its first contexts (NAB's
        probation, at least 169 rows, hides them; a live stream has no probation).
    margin
        Online, the bins span the range seen so far widened by this share of it on each side
        (room for values to come, so a slightly higher value does not rebuild the memory).
    value_range
        ``(low, high)`` fixed up front (as NAB hands CAD-OSE each file's range); ``None``: the
        range seen so far.
    spatial
        A value beyond the range seen so far by more than this share of it scores 1 whatever
        its context (a *spatial* anomaly: a new extreme, as Numenta's HTM detector flags them);
        0: context alone.
    flat
        A value repeated exactly for more than this many rows, and for longer than any run
        before it, scores 1 once (a stuck sensor or a dead metric); 0: off.
    level
        From row ``history`` on, a median of the last ``smooth`` values beyond the range of
        such medians by more than this share of it scores 1 (a sustained new level); 0: off.
    seasonal
        For a periodic series, a median of the last ``smooth`` differences from the same
        phase of the last periods beyond the range of such medians by more than this share
        of it scores 1 (a missing peak, a quiet holiday); 0: off.
    smooth
        Rows in the rolling medians of the ``level`` and ``seasonal`` rules.

    Examples
    --------
    >>> det = ContextDetector(value_range=(0.0, 11.0))
    >>> scores = [det.score_one({"v": float(i % 12)}) for i in range(3)]; scores
    [0.0, 0.0, 0.0]
    """

    explains: ClassVar[bool] = True
    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "bits": (1, 8),
        "rest": (0, 10_000),
        "base_threshold": (0.0, 1.0),
        "max_left": (1, 64),
        "max_active": (1, 200),
        "history": (10, 100_000),
        "max_contexts": (100, 10_000_000),
        "warm_up": (0, 100_000),
        "margin": (0.0, 10.0),
        "spatial": (0.0, 10.0),
        "flat": (0, 100_000),
        "level": (0.0, 10.0),
        "seasonal": (0.0, 10.0),
        "smooth": (1, 10_000),
    }

    def __init__(
        self,
        bits: int = 3,
        rest: int = 10,
        base_threshold: float = 0.7,
        max_left: int = 7,
        max_active: int = 15,
        history: int = 2000,
        max_contexts: int = 200_000,
        warm_up: int = 50,
        margin: float = 0.0,
        value_range: tuple[float, float] | None = None,
        spatial: float = 0.01,
        flat: int = 100,
        level: float = 0.05,
        seasonal: float = 0.1,
        smooth: int = 24,
    ) -> None:
        self.bits, self.rest, self.base_threshold = int(bits), int(rest), base_threshold
        self.max_left, self.max_active, self.history, self.max_contexts = max_left, max_active, history, max_contexts
        self.warm_up, self.margin, self.value_range, self.spatial = warm_up, margin, value_range, spatial
        self.flat, self.level, self.seasonal, self.smooth = int(flat), level, seasonal, int(smooth)
        self._rows = 0
        self._bins = 2**self.bits - 1
        self._streams: dict[str, _Stream] = {}
        self._recent_scores: deque[float] = deque([1.0], maxlen=max(self.rest, 1))  # CAD-OSE rests at the start
        self._last: tuple[dict[str, float], float] | None = None

    # -- one feature -------------------------------------------------------------------------------

    def _facts(self, stream: _Stream, value: float) -> tuple[int, ...]:
        b = min(max(int((value - stream.bin_low) / stream.step), 0), self._bins)
        return tuple(_SENSOR + 2 * i + ((b >> i) & 1) for i in range(self.bits))

    def _advance(self, stream: _Stream, value: float, predict: bool = True) -> float:
        """Step the feature's memory to ``value``; its raw score (0 when the facts were predicted)."""
        memory = stream.memory
        if isinstance(memory, ContextKernel):
            return memory.advance(value)
        assert memory is not None
        facts = self._facts(stream, value)
        surprised = any(f not in stream.predicted for f in facts)
        stream.predicted, matched, novel = memory.step(facts, self.max_active, predict)
        return (1.0 - matched + novel) / 2.0 if surprised else 0.0

    def _rebuild(self, stream: _Stream) -> None:
        """A fresh memory over the stream's range, taught the kept values (natively where the kernel is built)."""
        if self.value_range is not None:
            stream.bin_low, stream.bin_high = float(self.value_range[0]), float(self.value_range[1])
        else:
            pad = (stream.high - stream.low) * self.margin
            stream.bin_low, stream.bin_high = stream.low - pad, stream.high + pad
        span = stream.bin_high - stream.bin_low
        stream.step = (span if span > 0 else self._bins) / self._bins
        stream.predicted = set()
        if native_context.available():
            stream.memory = None  # the old memory goes before the new one is built
            stream.memory = ContextKernel.build(
                bits=self.bits,
                max_left=self.max_left,
                max_active=self.max_active,
                max_contexts=self.max_contexts,
                bin_low=stream.bin_low,
                step=stream.step,
                recent=np.fromiter(stream.recent, float, len(stream.recent)),
            )
            return
        stream.memory = ContextMemory(self.max_left)
        last = len(stream.recent) - 1
        for i, value in enumerate(stream.recent):
            self._advance(stream, value, predict=i == last)  # only the last prediction is ever looked at
            if len(stream.memory) >= self.max_contexts // 2:  # start afresh from here: no rebuild on every row
                stream.memory = ContextMemory(self.max_left)
                stream.predicted = set()

    def _raw(self, name: str, value: float) -> float:
        """Score ``value`` of feature ``name`` and learn it (CAD learns as it scores)."""
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(self.history, self._rules())
        spatial = self.spatial > 0 and beyond(value, stream.low, stream.high, self.spatial)
        stream.low, stream.high = min(stream.low, value), max(stream.high, value)
        flat = stream.flat.update(value)
        level = self.level > 0 and stream.level.update(value)
        seasonal = self.seasonal > 0 and stream.seasonal.update(value, stream.recent)  # before value joins recent
        shape = spatial or flat or level or seasonal
        outside = self.value_range is None and not stream.bin_low <= value <= stream.bin_high
        memory = stream.memory
        if isinstance(memory, ContextKernel) and not outside:
            score = memory.advance(value)  # -1: the memory is full, nothing learned
        else:
            score = -1.0 if memory is None or outside or len(memory) >= self.max_contexts else 0.0
            if score == 0.0:
                score = self._advance(stream, value)
        if score < 0:
            self._rebuild(stream)  # from the values before this one
            score = self._advance(stream, value)
        stream.recent.append(value)
        return 1.0 if shape else score

    def _rules(self) -> tuple[FlatLine, LevelShift, SeasonalBreak]:
        return (
            FlatLine(self.flat),
            LevelShift(self.level, self.smooth, after=self.history),
            SeasonalBreak(self.seasonal, self.smooth, self.history),
        )

    # -- the Detector API --------------------------------------------------------------------------

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`; a stream saved before the shape rules existed gets fresh ones."""
        super().restore(state)
        for stream in self._streams.values():
            if not hasattr(stream, "seasonal"):
                stream.flat, stream.level, stream.seasonal = self._rules()
            memory = stream.memory
            if isinstance(memory, ContextMemory) and not hasattr(memory, "left_sets"):  # saved before the sets were
                memory.left_sets = [frozenset(f) for f in memory.facts[0]]
            if isinstance(memory, ContextMemory) and native_context.available():  # saved by the Python path
                packed = context_state.pack(
                    memory,
                    stream.predicted,
                    bits=self.bits,
                    max_active=self.max_active,
                    max_contexts=self.max_contexts,
                    bin_low=stream.bin_low,
                    step=stream.step,
                )
                stream.memory, stream.predicted = ContextKernel.load(packed), set()

    def _assess(self, x: dict[str, float]) -> float:
        best, driver = 0.0, None
        for name, value in x.items():
            if value is None or not math.isfinite(value):
                continue
            raw = self._raw(name, float(value))
            if raw > best:
                best, driver = raw, name
        self.evidence = driver  # the feature whose score is the row's (the first of equals)
        return best

    def score_one(self, x: dict[str, float]) -> float:  # noqa: D102
        if self._last is not None and self._last[0] == x:
            raw = self._last[1]
        else:
            raw = self._assess(x)  # CAD scores and learns in one step: learn_one(x) will not step again
            self._last = (dict(x), raw)
        resting = self.rest > 0 and max(self._recent_scores) >= self.base_threshold
        return 0.0 if resting or self._rows < self.warm_up else raw

    def learn_one(self, x: dict[str, float]) -> None:  # noqa: D102
        raw = self._last[1] if self._last is not None and self._last[0] == x else self._assess(x)
        self._last = None
        self._rows += 1
        if self.rest > 0:
            self._recent_scores.append(raw)
