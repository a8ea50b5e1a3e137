"""Prometheus scrape source: any exporter's text exposition format into ``prom_samples`` events.

``prometheus://host:port/metrics`` GETs ``http://host:port/metrics`` every
``interval`` and parses the text format vectorised (polars string expressions, no
per-line Python): one row per sample with ``instance`` (host:port), ``metric``,
``labels``, ``series`` (``metric{labels}``), ``value`` and, for counters, ``rate``
— the per-second increase since the previous scrape (a counter reset counts from
zero). ``match`` keeps only metric names matching a regular expression. Windows
are per ``series`` by default (the schema's entity), with
``aggregations.PROM_SAMPLES_AGGS``.

Examples
--------
>>> text = b'''# TYPE node_cpu_seconds_total counter
... node_cpu_seconds_total{cpu="0",mode="idle"} 10.5
... node_load1 0.25
... '''
>>> f = parse_exposition(text, instance="h:9100", ts_ms=1_700_000_000_000)
>>> f.select("series", "value").rows()
[('node_cpu_seconds_total{cpu="0",mode="idle"}', 10.5), ('node_load1', 0.25)]
>>> f["counter"].to_list()
[True, False]
"""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

from workbench.sources.base import RawBatch
from workbench.sources.http import PollingSource
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["PrometheusSource", "parse_exposition"]

_SAMPLE = r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$"
_COUNTER_SUFFIXES = r"(_total|_count|_sum|_bucket)$"


def parse_exposition(body: bytes, *, instance: str, ts_ms: int, match: str | None = None) -> pl.DataFrame:
    """Samples of a Prometheus text exposition as a frame (``counter`` marks counter samples)."""
    lines = pl.Series("line", body.decode("utf-8", "replace").splitlines(), dtype=pl.String)
    frame = lines.to_frame()
    types = (
        frame.filter(pl.col("line").str.starts_with("# TYPE "))
        .select(pl.col("line").str.split(" ").list.get(2, null_on_oob=True).alias("family"),
                pl.col("line").str.split(" ").list.get(3, null_on_oob=True).alias("type"))
    )  # fmt: skip
    counters = types.filter(pl.col("type") == "counter")["family"]
    parts = frame.filter(~pl.col("line").str.starts_with("#") & (pl.col("line").str.strip_chars() != "")).select(
        pl.col("line").str.extract_groups(_SAMPLE).alias("g")
    )
    out = parts.unnest("g").rename({"1": "metric", "2": "labels", "3": "raw", "4": "at"}).drop_nulls("metric")
    if match:
        out = out.filter(pl.col("metric").str.contains(f"^(?:{match})$"))
    ts = pl.when(pl.col("at").is_not_null()).then(pl.col("at").cast(pl.Int64, strict=False)).otherwise(ts_ms)
    labelled = pl.col("labels").is_not_null() & (pl.col("labels") != "")
    series = (
        pl.when(labelled)
        .then(pl.concat_str(pl.col("metric"), pl.lit("{"), pl.col("labels"), pl.lit("}")))
        .otherwise(pl.col("metric"))
    )
    sid = pl.concat_str(pl.lit(instance + "|"), pl.col("metric"), pl.lit("{"), pl.col("labels").fill_null(""),
                        pl.lit("}"))  # fmt: skip
    return out.select(
        pl.concat_str(_short(out.select(sid.alias("sid"))["sid"]), pl.lit("|"), ts.cast(pl.String)).alias("event_id"),
        ts.alias("ts"),
        pl.lit(instance).alias("instance"),
        pl.col("metric"),
        pl.col("labels"),
        series.alias("series"),
        pl.col("raw").str.replace(r"^\+", "").cast(pl.Float64, strict=False).alias("value"),
        (pl.col("metric").is_in(counters.implode()) | pl.col("metric").str.contains(_COUNTER_SUFFIXES)).alias(
            "counter"
        ),
    )  # fmt: skip


def _short(sid: pl.Series) -> pl.Series:
    """Series ids as they are, but one longer than 96 characters as a digest (event ids stay within 128).

    >>> _short(pl.Series(["h:9|up{}", "h:9|x{" + "a" * 100 + "}"])).str.len_chars().to_list()
    [8, 24]
    """
    long = sid.filter(sid.str.len_chars() > 96).unique()
    if long.is_empty():
        return sid
    digests = {v: hashlib.blake2b(v.encode(), digest_size=12).hexdigest() for v in long.to_list()}
    return sid.replace(digests)


class PrometheusSource(PollingSource):
    """Scrape a Prometheus exporter every ``interval``.

    Parameters
    ----------
    url
        ``prometheus://host:port/metrics`` (``scheme=https`` for TLS).
    match
        Regular expression a metric name must match (whole name) to be kept.
    scheme
        ``http`` or ``https`` for the scrape itself.
    **kwargs
        :class:`~workbench.sources.http.PollingSource` options (``interval`` — default 1 s …).
    """

    def __init__(self, url: str | ParsedUrl, *, match: str | None = None, scheme: str = "http", **kwargs: Any) -> None:
        u = parse_for(url, "prometheus")
        self.instance = f"{u.host or '127.0.0.1'}:{u.port or 9090}"
        kwargs.setdefault("name", "prometheus")
        kwargs.setdefault("interval", 1.0)
        super().__init__(f"{scheme}://{self.instance}/{u.path or 'metrics'}", **kwargs)
        self.match = match
        self._previous: pl.DataFrame | None = None  # (series, ts, value) of counters at the last scrape

    def _poll(self) -> RawBatch | None:
        body, _ = self._get(self.url)
        now_ms = int(self.clock.now().timestamp() * 1000)
        samples = parse_exposition(body, instance=self.instance, ts_ms=now_ms, match=self.match)
        if samples.height == 0:
            return None
        frame = self._with_rates(samples)
        return RawBatch(frame=frame, offset=self.offset + 1, rows=frame.height)

    def _with_rates(self, samples: pl.DataFrame) -> pl.DataFrame:
        """Add ``rate``: per-second increase of each counter since the previous scrape."""
        current = samples.filter(pl.col("counter")).select(
            "series", pl.col("ts").alias("t1"), pl.col("value").alias("v1")
        )
        out = samples
        if self._previous is not None:
            prev = self._previous.rename({"t1": "t0", "v1": "v0"})
            joined = current.join(prev, on="series", how="inner")
            dt = (pl.col("t1") - pl.col("t0")).cast(pl.Float64) / 1000
            delta = pl.when(pl.col("v1") >= pl.col("v0")).then(pl.col("v1") - pl.col("v0")).otherwise(pl.col("v1"))
            rates = joined.filter(pl.col("t1") > pl.col("t0")).select("series", (delta / dt).alias("rate"))
            out = out.join(rates, on="series", how="left")
        else:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias("rate"))
        self._previous = current
        return out.drop("counter")

    def snapshot(self) -> dict[str, Any]:
        """Offset plus the last counter values (so the first rate after a restart is known)."""
        prev = None if self._previous is None else self._previous.clone()
        return {**super().snapshot(), "previous": prev}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        prev = state.get("previous")
        self._previous = None if prev is None else prev.clone()
