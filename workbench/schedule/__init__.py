"""Scheduled report runs: schedule files, a scheduler on an injected clock, and the run history.

Nothing here imports Panel; the run-history view is :mod:`workbench.views.runs`.

Examples
--------
>>> from workbench.schedule import Job, RunHistory, Scheduler, load_schedule
>>> Scheduler.__module__
'workbench.schedule.scheduler'
"""

from workbench.schedule.history import STATUSES, RunHistory
from workbench.schedule.jobs import Job, Notify, Schedule, load_schedule
from workbench.schedule.scheduler import Scheduler, run_job

__all__ = ["STATUSES", "Job", "Notify", "RunHistory", "Schedule", "Scheduler", "load_schedule", "run_job"]
