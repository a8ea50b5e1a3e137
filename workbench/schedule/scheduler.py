"""The scheduler: runs each job at its cron times, never twice at once, once after downtime.

Time comes only from the injected clock (``clock.now()``, ``clock.sleep()``), so a
:class:`~workbench.clock.ManualClock` drives it deterministically in tests.

- **Fire times** come from the job's cron expression in its time zone (``cronsim``).
- **No overlap.** A run still going when the job's next fire time comes makes that
  fire time a ``skipped`` row in the history (with the reason), not a second run.
- **Coalesce.** Fire times missed while the scheduler was down (found from the
  history: the newest scheduled time of the job) run *once*, at start, as the latest
  of them; its row says how many fire times it stands for (``coalesced``). A job with
  no history starts at its next fire time.
- **History.** Every run is a row in :class:`~workbench.storage.runs.RunHistory`:
  ``running`` when it starts, then ``ok`` (with the output) or ``failed`` (with the
  error). Rows left ``running`` by a scheduler that died are marked ``interrupted``.
- **Failures notify** through the alert notifiers (a webhook per job); a failed
  notification is added to the run's error, never raised into the scheduler.

Examples
--------
>>> import tempfile
>>> from datetime import UTC
>>> from pathlib import Path
>>> from workbench.clock import ManualClock
>>> from workbench.storage.runs import RunHistory
>>> from workbench.schedule.jobs import Job
>>> tmp = Path(tempfile.mkdtemp())
>>> clock = ManualClock(datetime(2024, 1, 1, 5, 59, tzinfo=UTC))
>>> job = Job(name="hourly", notebook=tmp / "n.ipynb", cron="0 * * * *", output=tmp)
>>> s = Scheduler([job], RunHistory(tmp / "runs.duckdb"), clock=clock, runner=lambda job, at, prev: f"{at:%H:%M}")
>>> s.tick(), s.next_fire().isoformat()
([], '2024-01-01T06:00:00+00:00')
>>> clock.advance(60); [e["event"] for e in s.tick()]; s.wait()
['started']
>>> s.history.runs().select("status", "output").row(0)
('ok', '06:00')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from workbench.clock import Clock, SystemClock
from workbench.errors import ConfigError, WorkbenchError
from workbench.schedule.jobs import Job
from workbench.schedule.notify import FailureNotifier, failure_message
from workbench.storage.runs import RunHistory

__all__ = ["Runner", "Scheduler", "run_job"]

log = logging.getLogger(__name__)

#: ``runner(job, scheduled, previous) -> output``: produce one run's output (raise on failure).
Runner = Callable[[Job, datetime, datetime | None], Any]


def run_job(job: Job, scheduled: datetime, previous: datetime | None) -> str:
    """The default runner: execute the job's notebook with its parameters into its output folder."""
    from workbench.reports.notebook import run_report

    out = job.output_for(scheduled)
    run_report(job.notebook, out, job.parameters_for(scheduled, previous), timeout=job.timeout, cwd=job.cwd)
    return str(out)


def _webhook(job: Job) -> FailureNotifier | None:
    if job.notify is None:
        return None
    from workbench.alerts.notifiers import WebhookNotifier

    return WebhookNotifier(job.notify.target(), secret=job.notify.secret())


class Scheduler:
    """Runs ``jobs`` at their cron times on ``clock``, recording every run in ``history``.

    Parameters
    ----------
    jobs
        The jobs (names unique).
    history
        Where runs are recorded (and where downtime is read from).
    clock
        Injected clock.
    runner
        Produces one run (default: :func:`run_job`, the report notebook).
    notifier
        ``notifier(job)`` gives the notifier of a failed run, or ``None`` (default: the
        job's webhook, as an alert :class:`~workbench.alerts.notifiers.WebhookNotifier`).
    workers
        Runs of different jobs that may go on at once.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        history: RunHistory,
        *,
        clock: Clock | None = None,
        runner: Runner | None = None,
        notifier: Callable[[Job], FailureNotifier | None] | None = None,
        workers: int = 2,
    ) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ConfigError(f"scheduler: job names must be unique, not {names}")
        if workers < 1:
            raise ConfigError(f"scheduler: workers must be >= 1, not {workers}")
        self.jobs = list(jobs)
        self.history = history
        self.clock = clock or SystemClock()
        self.runner = runner or run_job
        self.notifier = notifier or _webhook
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="wb-schedule")
        self._lock = threading.Lock()
        self._next: dict[str, datetime] = {}
        self._previous: dict[str, datetime | None] = {}
        self._running: dict[str, tuple[Future[None], datetime]] = {}
        self._started = False
        self.stopping = threading.Event()

    # -- time -------------------------------------------------------------------------
    def _begin(self, now: datetime) -> None:
        """Where each job resumes: after its newest recorded fire time, else at its next one."""
        interrupted = self.history.interrupt(now)
        if interrupted:
            log.warning("scheduler: %d run(s) left running by a previous scheduler marked interrupted", interrupted)
        for job in self.jobs:
            last = self.history.last_scheduled(job.name)
            self._previous[job.name] = last
            self._next[job.name] = job.next_fire(last if last is not None else now)
        self._started = True

    def next_fire(self) -> datetime | None:
        """The earliest next fire time of any job (after the first tick)."""
        return min(self._next.values(), default=None)

    def tick(self) -> list[dict[str, Any]]:
        """Start (or skip) every run that is due now; returns what happened, one dict per fire time handled."""
        now = self.clock.now()
        if not self._started:
            self._begin(now)
        events = []
        for job in self.jobs:
            due = self._next[job.name]
            if due > now:
                continue
            fires = [due]
            for fire in job.fires(due):  # every fire time up to now: coalesced into one run
                if fire > now:
                    self._next[job.name] = fire
                    break
                fires.append(fire)
            events.append(self._fire(job, fires[-1], len(fires), now))
        return events

    def trigger(self, name: str) -> dict[str, Any]:
        """Run the job ``name`` now, out of its schedule (recorded as scheduled now; no overlap either)."""
        now = self.clock.now()
        if not self._started:
            self._begin(now)
        job = next((j for j in self.jobs if j.name == name), None)
        if job is None:
            raise ConfigError(f"scheduler: no job {name!r}; jobs: {[j.name for j in self.jobs]}")
        return self._fire(job, now, 1, now)

    def _fire(self, job: Job, scheduled: datetime, coalesced: int, now: datetime) -> dict[str, Any]:
        with self._lock:
            running = self._running.get(job.name)
            if running is not None and not running[0].done():
                reason = f"previous run (scheduled {running[1].isoformat()}) still running"
                self.history.skip(job.name, scheduled=scheduled, at=now, reason=reason, coalesced=coalesced)
                log.warning("job %r: fire time %s skipped: %s", job.name, scheduled.isoformat(), reason)
                return {"event": "skipped", "job": job.name, "scheduled": scheduled, "coalesced": coalesced}
            run = self.history.start(job.name, scheduled=scheduled, started=now, coalesced=coalesced)
            previous = self._previous.get(job.name)
            self._previous[job.name] = scheduled
            future = self._pool.submit(self._execute, job, run, scheduled, previous, now)
            self._running[job.name] = (future, scheduled)
        if coalesced > 1:
            log.info("job %r: %d missed fire times run once, as %s", job.name, coalesced, scheduled.isoformat())
        return {"event": "started", "job": job.name, "scheduled": scheduled, "coalesced": coalesced, "run": run}

    # -- runs -------------------------------------------------------------------------
    def _execute(self, job: Job, run: int, scheduled: datetime, previous: datetime | None, started: datetime) -> None:
        try:
            output = self.runner(job, scheduled, previous)
        except Exception as exc:  # recorded, notified and logged: the scheduler goes on with other runs
            error = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            log.error("job %r (scheduled %s) failed: %s", job.name, scheduled.isoformat(), error)
            ended = self.clock.now()
            output_path = getattr(exc, "output", None)
            error += self._notify(job, run, scheduled, started, ended, error, output_path)
            self.history.finish(run, ended=ended, status="failed", output=output_path, error=error)
            return
        self.history.finish(run, ended=self.clock.now(), status="ok", output=None if output is None else str(output))

    def _notify(
        self, job: Job, run: int, scheduled: datetime, started: datetime, ended: datetime, error: str, output: Any
    ) -> str:
        """Send the failure; returns what to add to the run's error when that failed too."""
        try:
            notifier = self.notifier(job)
            if notifier is None:
                return ""
            message = failure_message(
                job=job.name,
                notebook=str(job.notebook),
                error=error,
                scheduled=scheduled,
                started=started,
                ended=ended,
                output=None if output is None else str(output),
                parameters=job.parameters_for(scheduled, None),
                run=run,
            )
            notifier.notify(message)
        except Exception as exc:  # the run's failure stays the news; the notification's is appended to it
            log.error("job %r: failure notification failed: %s", job.name, exc)
            return f" (failure notification failed: {type(exc).__name__}: {exc})"
        return ""

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs going on now (tests, shutdown)."""
        with self._lock:
            futures = [f for f, _ in self._running.values()]
        wait(futures, timeout=timeout)

    @property
    def running(self) -> list[str]:
        """Jobs with a run going on now."""
        with self._lock:
            return sorted(name for name, (f, _) in self._running.items() if not f.done())

    def run(self, *, max_sleep: float = 60.0, max_ticks: int | None = None) -> None:
        """Tick, then sleep (on the clock) until the next fire time, until :meth:`stop` (or ``max_ticks``)."""
        ticks = 0
        while not self.stopping.is_set():
            self.tick()
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                break
            nxt = self.next_fire()
            pause = max_sleep if nxt is None else (nxt - self.clock.now()).total_seconds()
            self.clock.sleep(min(max(pause, 0.05), max_sleep))

    def stop(self) -> None:
        """Stop :meth:`run` after its current sleep."""
        self.stopping.set()

    def close(self, *, wait_for_runs: bool = True) -> None:
        """Stop and release the worker threads."""
        self.stop()
        self._pool.shutdown(wait=wait_for_runs)

    def __repr__(self) -> str:
        return f"Scheduler(jobs={[j.name for j in self.jobs]}, history={self.history!r})"
