"""The shipped check batteries, run over every catalogued detector and every registered node.

``workbench.testing.check_detector`` and ``check_operator`` are what a user runs on a
detector or node of their own; here they hold Workbench's own to the same contract.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from streamz import Stream

from workbench.models.catalog import DETECTORS
from workbench.models.detectors import Detector
from workbench.operators import aggregations as agg
from workbench.operators.windows import Tumbling
from workbench.pipeline.nodes import NODES
from workbench.testing import check_detector, check_operator, server_metrics_frame

SPAN = timedelta(minutes=10)


def _frames(k: int = 0) -> list[pl.DataFrame]:
    """Three batches of events (the last repeats part of the first: duplicates), ``k`` spans later."""
    frame = server_metrics_frame(600, hosts=4, step_ms=500).with_columns(
        pl.col("ts") + SPAN * k, pl.col("event_id") + f"-{k}"
    )
    return [frame[:300], frame[300:], frame[:60]]


def _ndjson(k: int = 0) -> list[bytes]:
    def lines(frame: pl.DataFrame) -> bytes:
        good = frame.with_columns(pl.col("ts").dt.epoch("ms")).write_ndjson().encode()
        return good + b'{"event_id": "bad", "ts": "yesterday"}\n{broken\n'

    return [lines(f) for f in _frames(k)]


def _decoded(k: int = 0) -> list[pl.DataFrame]:
    head = Stream()
    out = head.decode("server_metrics").sink_to_list()
    for blob in _ndjson(k):
        head.emit(blob)
    return out


def _windows(k: int = 0) -> list[pl.DataFrame]:
    head = Stream()
    node = head.window(Tumbling("10s"), by="host", aggs=[agg.count(), agg.mean("cpu")], lateness="0s")
    out = node.sink_to_list()
    for frame in _frames(k)[:2]:
        head.emit(frame)
    node.flush()
    return out


HOSTS = pl.DataFrame({"host": ["h0", "h1", "h2"], "service": ["api", "api", "db"]})

#: method → (factory on an upstream, input batches, the inputs of round k)
CASES = {
    "decode": (lambda up: up.decode("server_metrics"), _ndjson, _ndjson),
    "validate": (lambda up: up.validate("server_metrics"), _decoded, _decoded),
    "horizon": (lambda up: up.horizon("5m"), _frames, _frames),
    "dedupe": (lambda up: up.dedupe("event_id", ttl="2m"), _frames, _frames),
    "enrich": (lambda up: up.enrich(HOSTS, on="host"), _frames, _frames),
    "pseudonymize": (lambda up: up.pseudonymize(["host", "event_id"], key=bytes(range(32))), _frames, _frames),
    "window": (
        lambda up: up.window(Tumbling("10s"), by="host", aggs=[agg.count(), agg.mean("cpu")], lateness="5s"),
        _frames,
        _frames,
    ),
    "score": (
        lambda up: up.score("robust_z", features=["cpu_mean", "count"], by="host", drift=(), idle="1m"),
        _windows,
        _windows,
    ),
}


def test_every_registered_node_has_a_case():
    assert set(CASES) == set(NODES)


@pytest.mark.parametrize("method", sorted(CASES))
def test_every_registered_node_keeps_the_operator_contract(method):
    make, batches, more = CASES[method]
    check_operator(make, batches(), more=more)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_catalogued_detector_keeps_the_detector_contract(name):
    check_detector(DETECTORS[name])


class Leaky(Detector):
    """A detector that breaks the contract: it remembers every value.

    Parameters
    ----------
    scale
        Scores are ``value / scale``, clipped.
    """

    bounds = {"scale": (1, 1000)}

    def __init__(self, scale: int = 100) -> None:
        self.scale = scale
        self.seen: list[float] = []

    def score_one(self, x: dict[str, float]) -> float:
        return 0.0 if not self.seen else min(1.0, max(0.0, abs(x["value"] - self.seen[-1]) / self.scale))

    def learn_one(self, x: dict[str, float]) -> None:
        self.seen.append(x["value"])


def test_the_battery_catches_a_detector_with_unbounded_state():
    from workbench.testing.checks import check_bounded_state

    with pytest.raises(AssertionError, match="state grew"):
        check_bounded_state(Leaky)


def test_the_battery_catches_a_node_that_mutates_its_input_and_forgets_its_state():
    from workbench.operators.base import Operator

    class Careless(Operator):
        def __init__(self, upstream: Stream) -> None:
            super().__init__(upstream, name="careless")
            self.total = 0

        def process(self, x, metadata):
            self.total += x.height
            x.insert_column(0, pl.Series("total", [self.total] * x.height))  # in place: mutates the input
            return x, metadata

    with pytest.raises(AssertionError, match="careless|Careless"):
        check_operator(Careless, _frames())
