"""The context detector's C kernel: the same state, scores and snapshots as the pure-Python memory it replaces.

The Python ``ContextMemory`` is the reference: the kernel must hold, step for step, the
state the Python memory would hold (compared word for word through
:mod:`workbench.models.context_state`), give bit-identical scores, snapshot to bytes and
restore mid-stream — from its own snapshots, from the Python path's, and into the
Python path where the kernel cannot be built.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from workbench.models import context_state
from workbench.models.context import ContextDetector, ContextMemory
from workbench.models.detectors import score_stream
from workbench.native import context as native_context
from workbench.native.context import ContextKernel

needs_kernel = pytest.mark.skipif(not native_context.available(), reason=native_context.status())


def _series(kind: str, n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = {
        "walk": 10 + rng.normal(0, 1, n).cumsum(),  # new extremes: many rebuilds
        "wave": np.sin(2 * np.pi * t / 37) + rng.normal(0, 0.1, n),
        "levels": rng.integers(0, 5, n).astype(float),
    }[kind]
    return [{"v": float(v)} for v in values]


def _python(make, rows):
    with native_context.disabled():
        return score_stream(make(), rows)


def test_the_kernel_is_built_where_there_is_a_compiler():
    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler")
    assert native_context.status() == "native"
    with native_context.disabled():
        assert native_context.status().startswith("python")
        det = ContextDetector()
        det.score_one({"v": 1.0})
        assert isinstance(det._streams["v"].memory, ContextMemory)
    det = ContextDetector()
    det.score_one({"v": 1.0})
    assert isinstance(det._streams["v"].memory, ContextKernel)


@needs_kernel
@pytest.mark.parametrize("kind", ["walk", "wave", "levels"])
@pytest.mark.parametrize(
    "params",
    [{}, {"history": 150, "max_contexts": 400}, {"bits": 5, "max_left": 3, "max_active": 4, "margin": 0.1}],
    ids=["default", "small-memory", "other-settings"],
)
def test_kernel_scores_equal_the_python_memorys_bit_for_bit(kind, params):
    rows = _series(kind, 1000)
    native = score_stream(ContextDetector(**params), rows)
    assert np.asarray(native).tobytes() == np.asarray(_python(lambda: ContextDetector(**params), rows)).tobytes()


@needs_kernel
@pytest.mark.parametrize("kind", ["walk", "wave"])
def test_kernel_state_equals_the_python_memorys_word_for_word(kind):
    """After every rebuild and step, the kernel holds exactly what the Python memory holds (hashes included)."""
    rows = _series(kind, 700, seed=3)
    fast, slow = ContextDetector(history=200, max_contexts=600), ContextDetector(history=200, max_contexts=600)
    for i, x in enumerate(rows):
        fast.score_one(x)
        fast.learn_one(x)
        with native_context.disabled():
            slow.score_one(x)
            slow.learn_one(x)
        if i % 50 == 49:
            f, s = fast._streams["v"], slow._streams["v"]
            assert isinstance(f.memory, ContextKernel) and isinstance(s.memory, ContextMemory)
            packed = context_state.pack(
                s.memory, s.predicted, bits=3, max_active=15, max_contexts=600, bin_low=s.bin_low, step=s.step
            )
            assert f.memory.dump() == packed, f"row {i}"


@pytest.mark.parametrize("taken", ["native", "python"])
@pytest.mark.parametrize("restored", ["native", "python"])
def test_a_detector_restored_mid_stream_continues_with_identical_scores(taken, restored):
    if "native" in (taken, restored) and not native_context.available():
        pytest.skip(native_context.status())
    rows = _series("walk", 900, seed=1)
    make = functools.partial(ContextDetector, history=400)
    whole = _python(make, rows)
    first = make()
    with native_context.disabled() if taken == "python" else contextlib.nullcontext():
        head = score_stream(first, rows[:500])
        saved = pickle.dumps(first.snapshot())  # a checkpoint pickles the snapshot
    kind = ContextKernel if taken == "native" else ContextMemory
    assert isinstance(first._streams["v"].memory, kind)
    with native_context.disabled() if restored == "python" else contextlib.nullcontext():
        second = make()
        second.restore(pickle.loads(saved))
        kind = ContextKernel if restored == "native" else ContextMemory
        assert isinstance(second._streams["v"].memory, kind)  # a Python snapshot moves to the kernel
        tail = score_stream(second, rows[500:])
    assert np.asarray(head + tail).tobytes() == np.asarray(whole).tobytes()


@needs_kernel
def test_a_snapshot_never_aliases_the_live_kernel():
    rows = _series("wave", 600)
    det = ContextDetector()
    score_stream(det, rows[:300])
    state = det.snapshot()
    kernel = det._streams["v"].memory
    assert state["_streams"]["v"].memory is not kernel
    ahead = score_stream(det, rows[300:])
    det.restore(state)
    assert score_stream(det, rows[300:]) == ahead
    assert score_stream(copy.deepcopy(det), rows[:5]) == score_stream(det, rows[:5])


@needs_kernel
def test_kernel_state_round_trips_through_the_python_memory():
    det = ContextDetector()
    score_stream(det, _series("levels", 400))
    kernel = det._streams["v"].memory
    state = kernel.dump()
    memory, predicted, settings = context_state.unpack(state)
    assert settings["bits"] == 3 and settings["max_contexts"] == det.max_contexts
    assert context_state.pack(memory, predicted, **settings) == state
    assert ContextKernel.load(state).dump() == state
    assert len(ContextKernel.load(state)) == len(kernel) == len(memory)


@needs_kernel
@pytest.mark.parametrize("cut", [0, 8, 100, -8])
def test_broken_state_bytes_are_refused(cut):
    det = ContextDetector()
    score_stream(det, _series("wave", 200))
    state = det._streams["v"].memory.dump()
    broken = state[:cut] if cut else b"\x00" * len(state)
    with pytest.raises(ValueError, match="not a context memory's state"):
        ContextKernel.load(broken)
    with pytest.raises(ValueError, match="not a context memory's state"):
        context_state.unpack(broken)


def test_workbench_native_0_chooses_the_python_path():
    code = (
        "from workbench.models.context import ContextDetector, ContextMemory\n"
        "from workbench.native import context as c\n"
        "d = ContextDetector(); d.score_one({'v': 1.0}); d.score_one({'v': 2.0})\n"
        "print(c.status(), type(d._streams['v'].memory).__name__)\n"
    )
    env = {**os.environ, "WORKBENCH_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "python (disabled by WORKBENCH_NATIVE=0) ContextMemory"


def test_without_a_compiler_the_detector_runs_in_python_and_says_why(monkeypatch, tmp_path, caplog):
    library = native_context._LIBRARY
    monkeypatch.setattr(library, "lib", None)
    monkeypatch.setattr(library, "why", None)
    monkeypatch.setattr(library, "candidates", lambda: [tmp_path / "pkg" / "x.so", tmp_path / "cache" / "x.so"])
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with caplog.at_level("WARNING", logger="workbench.native"):
        assert not native_context.available()
    assert native_context.status().startswith("python (no C compiler could build it")
    assert "detecting in pure Python" in caplog.text
    det = ContextDetector()
    scores = score_stream(det, _series("wave", 300))
    assert isinstance(det._streams["v"].memory, ContextMemory)
    assert scores == _python(ContextDetector, _series("wave", 300))
