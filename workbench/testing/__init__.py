"""Test helpers shipped for users' tests: an offline oracle, fake sources and clocks, strategies, check batteries.

==========================  =========================================================
name                        what it is for
==========================  =========================================================
:func:`offline_windows`     windows computed in one polars query: the oracle a
                            streaming result must equal (:mod:`.oracle`)
:func:`late_mask`           which rows of an arrival-ordered frame are late
:func:`server_metrics_frame`  a seeded frame of server metrics
:func:`server_metrics_frames` a hypothesis strategy: frames with random disorder
:class:`FrameSource`        a fixed list of frames or NDJSON blobs as a source
:class:`ManualClock`        a clock that moves only when told
:func:`check_detector`      the contract every detector keeps (:mod:`.checks`)
:func:`check_operator`      the contract every pipeline node keeps
==========================  =========================================================

Production code never imports this package (an import contract checks it).
"""

from __future__ import annotations

from workbench.clock import ManualClock
from workbench.sources.frames import FrameSource
from workbench.testing.checks import check_detector, check_operator
from workbench.testing.oracle import late_mask, offline_windows, server_metrics_frame, server_metrics_frames

__all__ = [
    "FrameSource",
    "ManualClock",
    "check_detector",
    "check_operator",
    "late_mask",
    "offline_windows",
    "server_metrics_frame",
    "server_metrics_frames",
]
