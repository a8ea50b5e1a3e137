"""Workbench: a notebook-first workbench for live monitoring.

Events stream in, are decoded and validated in bulk, de-duplicated, enriched and
windowed in event time on a streamz graph of polars micro-batches; results go to a
Parquet lake, alerts and live views.

Examples
--------
>>> import workbench as wb
>>> wb.Tumbling("10s").size_ms
10000
"""

from workbench import operators as _operators  # noqa: F401 - registers the streamz nodes
from workbench.clock import ManualClock, SystemClock
from workbench.errors import CheckpointError, ConfigError, SchemaError, SourceError, WorkbenchError
from workbench.operators import aggregations
from workbench.operators.windows import Session, Sliding, Tumbling
from workbench.pipeline import Pipeline
from workbench.project.config import Project
from workbench.replay import replay
from workbench.schema import NETWORK_FLOWS, SERVER_METRICS, USER_EVENTS, Field, Schema, get_schema
from workbench.sources import FileSource, RawBatch, Simulator, Source, write_simulation
from workbench.storage import CheckpointStore, Lake

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
    "replay",
    "write_simulation",
]
