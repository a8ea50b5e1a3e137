"""Scheduled report runs: schedule files, a scheduler on an injected clock, and the run history.

Nothing here imports Panel; the run-history view is :mod:`workbench.views.runs`.

Examples
--------
>>> from workbench.schedule import Job, RunHistory, Scheduler, load_schedule
>>> Scheduler.__module__
'workbench.schedule.scheduler'
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Job": "workbench.schedule.jobs",
    "Notify": "workbench.schedule.jobs",
    "RunHistory": "workbench.storage.runs",
    "STATUSES": "workbench.storage.runs",
    "Schedule": "workbench.schedule.jobs",
    "Scheduler": "workbench.schedule.scheduler",
    "load_schedule": "workbench.schedule.jobs",
    "run_job": "workbench.schedule.scheduler",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
