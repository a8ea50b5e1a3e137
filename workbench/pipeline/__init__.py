"""Assembly: the ``Pipeline`` that owns one streamz graph, and what runs it.

==================  ===============================================================
module              holds
==================  ===============================================================
``core``            :class:`Pipeline`: build (``standard``, outputs, sinks), run, stop
``nodes``           the one registration of Workbench nodes on ``streamz.Stream``
``graph``           the nodes below a head in order; side-output wiring
``readahead``       decode/validate of raw batches ahead on worker threads
``checkpointing``   checkpoint and restore: sinks commit, then state, then source acks
``accounting``      ``ingested = valid + dead_lettered + duplicates + late + dropped``
``health``          liveness and per-node metrics
``registry``        one live pipeline per name (re-running a cell replaces it)
``alerting``        the alert node below ``windows`` (``Pipeline.alerts``)
``replay``          a file replayed into windows, dead letters and a summary
``ingest``          a live source URL run into the lake (and PostgreSQL)
==================  ===============================================================

Importing this package imports nothing but itself (``Pipeline`` is imported on first
use, and with it the engine); nothing here imports panel, bokeh or holoviews.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {"Pipeline": "workbench.pipeline.core"}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
