"""Workbench: a notebook-first workbench for live monitoring.

Events stream in, are decoded and validated in bulk, de-duplicated, enriched and
windowed in event time on a streamz graph of polars micro-batches; results go to a
Parquet lake, alerts and live views. The names below are imported on first use:
``import workbench`` itself imports nothing heavy (``wb.Pipeline`` brings in the
engine and registers its nodes on ``streamz.Stream``). The layers are described in
``docs/architecture.md``.

Examples
--------
>>> import workbench as wb
>>> wb.Tumbling("10s").size_ms
10000
"""

from __future__ import annotations

from workbench.lazy import defer_streamz_dask, exports

defer_streamz_dask()  # Dask loads only with a cluster (see workbench.lazy)

#: public name → the module that defines it; imported on first use, so the
#: ``workbench`` command starts without polars or streamz (``workbench --help``)
_WHERE = {
    "NETWORK_FLOWS": "workbench.schema",
    "SERVER_METRICS": "workbench.schema",
    "USER_EVENTS": "workbench.schema",
    "CheckpointError": "workbench.errors",
    "CheckpointStore": "workbench.storage.checkpoints",
    "ConfigError": "workbench.errors",
    "Field": "workbench.schema",
    "FileSource": "workbench.sources.files",
    "Lake": "workbench.storage.lake",
    "ManualClock": "workbench.clock",
    "Pipeline": "workbench.pipeline",
    "Project": "workbench.project.config",
    "RawBatch": "workbench.sources.base",
    "Schema": "workbench.schema",
    "SchemaError": "workbench.errors",
    "Session": "workbench.operators.windows",
    "Simulator": "workbench.sources.simulator",
    "Sliding": "workbench.operators.windows",
    "Source": "workbench.sources.base",
    "SourceError": "workbench.errors",
    "SystemClock": "workbench.clock",
    "Tumbling": "workbench.operators.windows",
    "WorkbenchError": "workbench.errors",
    "aggregations": "workbench.operators",
    "get_schema": "workbench.schema",
    "notebook": "workbench.views.notebook",
    "replay": "workbench.pipeline.replay",
    "write_simulation": "workbench.sources.simulator",
}

__version__ = "0.1.0"

__all__ = [
    "NETWORK_FLOWS",
    "SERVER_METRICS",
    "USER_EVENTS",
    "CheckpointError",
    "CheckpointStore",
    "ConfigError",
    "Field",
    "FileSource",
    "Lake",
    "ManualClock",
    "Pipeline",
    "Project",
    "RawBatch",
    "Schema",
    "SchemaError",
    "Session",
    "Simulator",
    "Sliding",
    "Source",
    "SourceError",
    "SystemClock",
    "Tumbling",
    "WorkbenchError",
    "aggregations",
    "get_schema",
    "notebook",
    "replay",
    "write_simulation",
]

__getattr__, __dir__ = exports(__name__, _WHERE)
