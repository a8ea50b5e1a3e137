"""The default detector's scores on NAB stay exactly what they were before its speed-ups.

``tests/data/context_nab_sha256.json`` holds, per NAB file, the sha256 of the float64
(little-endian) scores ``ContextDetector()`` gave it online, computed with the code before
any speed-up (commit 4fa0b2c). A fast subset (the three shortest files) runs by default;
every file in the reference runs in the ``slow`` test. Both paths are checked: the C kernel
(:mod:`workbench.native.context`) and the pure-Python memory it falls back on.

The reference covers all 58 NAB files (365,558 values), scored with the pre-change code
(4fa0b2c, pure Python: about 20 minutes). ``__main__`` adds any file it lacks; run it with
the old code first on the path::

    git worktree add /tmp/ctx-ref 4fa0b2c
    PYTHONPATH=/tmp/ctx-ref uv run python tests/test_context_scores.py
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.evaluate.corpus import LabelledSeries, load_nab
from workbench.models.context import ContextDetector
from workbench.models.detectors import score_stream

NAB = Path("/work/shared/data/nab")
REFERENCE = json.loads((Path(__file__).parent / "data" / "context_nab_sha256.json").read_text())
FAST = (
    "realTraffic/speed_7578.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
)

pytestmark = pytest.mark.skipif(not (NAB / "labels").exists(), reason="the NAB corpus is not at /work/shared/data/nab")


def _files() -> dict[str, LabelledSeries]:
    return {f.name: f for f in load_nab(NAB)}


def _check(series: LabelledSeries, path: str = "native") -> None:
    from workbench.native import context as native_context  # here: ``__main__`` runs on code without it

    if path == "native" and not native_context.available():
        pytest.skip(native_context.status())
    with native_context.disabled() if path == "python" else contextlib.nullcontext():
        scores = score_stream(ContextDetector(), ({"value": float(v)} for v in series.values))
    scores = np.asarray(scores, dtype="<f8")
    want = REFERENCE[series.name]
    assert (len(scores), float(scores.sum())) == (want["rows"], pytest.approx(want["sum"], abs=0))
    assert hashlib.sha256(scores.tobytes()).hexdigest() == want["sha256"], series.name


@pytest.mark.parametrize("path", ["native", "python"])
@pytest.mark.parametrize("name", FAST)
def test_scores_identical_on_short_nab_files(name: str, path: str) -> None:
    _check(_files()[name], path)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("path", ["native", "python"])
def test_scores_identical_on_every_nab_file_in_the_reference(path: str) -> None:
    files = _files()
    assert set(REFERENCE) == set(files)  # every NAB file
    for name in sorted(REFERENCE, key=lambda n: REFERENCE[n]["rows"]):
        _check(files[name], path)


if __name__ == "__main__":  # extends the reference with the files it lacks (run it on the pre-change code)
    import sys

    import workbench.models.context as module

    print(f"scoring with {module.__file__}", file=sys.stderr)
    out = Path(__file__).parent / "data" / "context_nab_sha256.json"
    for series in sorted(_files().values(), key=lambda f: len(f.values)):
        if series.name in REFERENCE:
            continue
        scores = np.asarray(score_stream(ContextDetector(), ({"value": float(v)} for v in series.values)), "<f8")
        REFERENCE[series.name] = {
            "rows": len(scores),
            "sha256": hashlib.sha256(scores.tobytes()).hexdigest(),
            "sum": float(scores.sum()),
        }
        out.write_text(json.dumps(REFERENCE, indent=1, sort_keys=True) + "\n")
        print(series.name, len(scores), file=sys.stderr)
