"""Schedule files: jobs (a notebook, its parameters, a cron expression in a time zone, where to write, whom to tell).

A schedule file is YAML::

    history: data/schedule/runs.duckdb       # the run history (default: beside the file)
    jobs:
      - name: daily-report
        notebook: notebooks/reports/daily-report.ipynb
        cron: "0 6 * * *"                    # minute hour day-of-month month day-of-week
        timezone: Europe/Paris               # the cron is read in this zone (DST included)
        parameters:                          # {scheduled} and {previous} are the fire times (ISO-8601)
          start: "{previous}"
          end: "{scheduled}"
          lake_path: data/lake
        output: reports/daily                # one HTML file per run: <name>-<scheduled UTC>.html
        timeout: 900                         # seconds one cell may run
        notify_on_failure:
          url_env: WORKBENCH_ALERT_WEBHOOK   # or url: https://…; the secret only from the environment
          secret_env: WORKBENCH_WEBHOOK_SECRET

Paths are relative to the schedule file's folder. Cron expressions are parsed by
``cronsim``; parameters whose names look like secrets are refused, as for
``workbench report``.

Examples
--------
>>> from datetime import UTC, datetime
>>> job = Job(name="j", notebook=Path("n.ipynb"), cron="0 6 * * *", timezone="Europe/Paris", output=Path("out"))
>>> job.next_fire(datetime(2024, 3, 30, 12, tzinfo=UTC)).isoformat()  # 06:00 Paris, summer time from the 31st
'2024-03-31T04:00:00+00:00'
>>> job.parameters_for(datetime(2024, 1, 2, 5, tzinfo=UTC), None) == {}
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

__all__ = ["Job", "Notify", "Schedule", "load_schedule"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDER = re.compile(r"\{(scheduled|previous|scheduled_date)\}")


def _zone(name: str, who: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{who}: timezone must be an IANA name like 'Europe/Paris', not {name!r}") from None


@dataclass(frozen=True)
class Notify:
    """Where a failed run is reported: a webhook URL (or the variable holding it) and its signing secret."""

    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None

    def target(self) -> str:
        """The webhook URL (read from the environment when configured so)."""
        if self.url:
            return self.url
        value = os.environ.get(self.url_env or "")
        if not value:
            raise ConfigError(f"notify_on_failure: environment variable {self.url_env!r} is not set")
        return value

    def secret(self) -> str | None:
        """The signing secret, from the environment (never from the schedule file)."""
        return os.environ.get(self.secret_env) if self.secret_env else None


@dataclass(frozen=True)
class Job:
    """One scheduled notebook.

    Parameters
    ----------
    name
        Unique name (letters, digits, ``_ . -``): the key of its run history.
    notebook
        The report notebook.
    cron
        Five-field cron expression, read in ``timezone``.
    timezone
        IANA zone name.
    output
        Folder of the HTML files, one per run.
    parameters
        Values for the notebook's ``parameters`` cell; ``{scheduled}``, ``{previous}`` and
        ``{scheduled_date}`` in strings become the run's fire times.
    notify
        Where to report a failed run.
    timeout
        Seconds one cell may run.
    cwd
        Working folder of the notebook's kernel.
    """

    name: str
    notebook: Path
    cron: str
    output: Path
    timezone: str = "UTC"
    parameters: Mapping[str, Any] = field(default_factory=dict)
    notify: Notify | None = None
    timeout: float = 600.0
    cwd: Path | None = None

    def __post_init__(self) -> None:
        from cronsim import CronSim, CronSimError

        who = f"job {self.name!r}"
        if not _NAME.match(self.name):
            raise ConfigError(f"{who}: name must be letters, digits, '_', '.' or '-'")
        try:
            CronSim(self.cron, datetime(2024, 1, 1, tzinfo=_zone(self.timezone, who)))
        except CronSimError as exc:
            raise ConfigError(f"{who}: cron must be a 5-field cron expression, not {self.cron!r} ({exc})") from None
        if self.timeout <= 0:
            raise ConfigError(f"{who}: timeout must be > 0, not {self.timeout}")
        from workbench.reports.notebook import check_parameters

        try:
            check_parameters(self.parameters)
        except ConfigError as exc:
            raise ConfigError(f"{who}: {exc}") from None

    def fires(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after`` (aware), in UTC."""
        from cronsim import CronSim

        if after.tzinfo is None:
            raise ConfigError(f"job {self.name!r}: times must be timezone-aware, not {after!r}")
        for fire in CronSim(self.cron, after.astimezone(_zone(self.timezone, f"job {self.name!r}"))):
            yield fire.astimezone(UTC)

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``."""
        return next(self.fires(after))

    def parameters_for(self, scheduled: datetime, previous: datetime | None) -> dict[str, Any]:
        """The notebook parameters of the run scheduled at ``scheduled`` (placeholders filled)."""
        values = {
            "scheduled": scheduled.isoformat(),
            "previous": previous.isoformat() if previous else "",
            "scheduled_date": scheduled.astimezone(_zone(self.timezone, self.name)).date().isoformat(),
        }
        return {
            k: _PLACEHOLDER.sub(lambda m: values[m.group(1)], v) if isinstance(v, str) else v
            for k, v in self.parameters.items()
        }

    def output_for(self, scheduled: datetime) -> Path:
        """The HTML file of the run scheduled at ``scheduled``."""
        return self.output / f"{self.name}-{scheduled.astimezone(UTC):%Y%m%dT%H%M%SZ}.html"


@dataclass(frozen=True)
class Schedule:
    """The jobs of a schedule file and where their run history is kept."""

    jobs: tuple[Job, ...]
    history: Path

    def job(self, name: str) -> Job:
        """The job called ``name``."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise ConfigError(f"schedule: no job {name!r}; jobs: {[j.name for j in self.jobs]}")


_JOB_KEYS = {"name", "notebook", "cron", "timezone", "parameters", "output", "notify_on_failure", "timeout", "cwd"}


def load_schedule(path: str | Path) -> Schedule:
    """Read and check a schedule file (see the module docstring for the format)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"schedule: no file at {str(path)!r}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"schedule {path.name}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list) or not doc["jobs"]:
        raise ConfigError(f"schedule {path.name}: expected a mapping with a non-empty list 'jobs'")
    base = path.parent
    jobs = []
    for i, raw in enumerate(doc["jobs"]):
        who = f"schedule {path.name}: job {raw.get('name', i) if isinstance(raw, dict) else i!r}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{who}: must be a mapping, not {raw!r}")
        unknown = sorted(set(raw) - _JOB_KEYS)
        if unknown:
            raise ConfigError(f"{who}: unknown key(s) {unknown}; known: {sorted(_JOB_KEYS)}")
        missing = [k for k in ("name", "notebook", "cron", "output") if k not in raw]
        if missing:
            raise ConfigError(f"{who}: missing {missing}")
        notebook = base / str(raw["notebook"])
        if not notebook.is_file():
            raise ConfigError(f"{who}: no notebook at {str(notebook)!r}")
        jobs.append(
            Job(
                name=str(raw["name"]),
                notebook=notebook,
                cron=str(raw["cron"]),
                timezone=str(raw.get("timezone", "UTC")),
                output=base / str(raw["output"]),
                parameters=dict(raw.get("parameters") or {}),
                notify=_notify(raw.get("notify_on_failure"), who),
                timeout=float(raw.get("timeout", 600.0)),
                cwd=base / str(raw["cwd"]) if raw.get("cwd") else base,
            )
        )
    names = [j.name for j in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"schedule {path.name}: job names must be unique; repeated: {duplicates}")
    history = base / str(doc.get("history", f"{path.stem}.runs.duckdb"))
    return Schedule(jobs=tuple(jobs), history=history)


def _notify(raw: Any, who: str) -> Notify | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict) or not (raw.get("url") or raw.get("url_env")):
        raise ConfigError(f"{who}: notify_on_failure needs 'url' or 'url_env', not {raw!r}")
    unknown = sorted(set(raw) - {"url", "url_env", "secret_env"})
    if unknown:
        hint = " (secrets come from the environment: secret_env)" if "secret" in unknown else ""
        raise ConfigError(f"{who}: notify_on_failure: unknown key(s) {unknown}{hint}")
    return Notify(url=raw.get("url"), url_env=raw.get("url_env"), secret_env=raw.get("secret_env"))
