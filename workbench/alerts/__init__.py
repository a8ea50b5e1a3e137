"""Smart alerting: rules as values, an event-time lifecycle, routing, notifications, history.

- Rules (:mod:`~workbench.alerts.rules`): :class:`Threshold`, :class:`AnomalyScore`,
  :class:`ForecastDeviation`, :class:`RateOfChange`, :class:`Drift`, :class:`Absence`;
  or a YAML file (:func:`load_config`).
- Lifecycle (:mod:`~workbench.alerts.evaluator`): Prometheus' alerting-rule semantics
  on an evaluation clock in event time (lookback, staleness, ``for``,
  ``keep_firing_for``), vectorised over series; :func:`run_rule_tests` runs promtool's
  unit-test files (``workbench alerts test``).
- Routing (:mod:`~workbench.alerts.dispatch`): :class:`Route` (grouping and its timers),
  :class:`Inhibit`, silences, acknowledgements.
- :class:`AlertManager` ties them to an alert store (:class:`DuckDBStore`,
  :class:`PostgresStore`) and an :class:`Outbox` of notifiers (:class:`JsonlNotifier`,
  :class:`WebhookNotifier`, :class:`SlackNotifier`, :class:`EmailNotifier`,
  :class:`BusNotifier`, :class:`AlertmanagerNotifier`); ``Pipeline.alerts(...)`` puts it in a pipeline.
- :func:`backtest` runs rules over the lake with the same code path.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Absence": "workbench.alerts.rules",
    "AlertConfig": "workbench.alerts.loader",
    "AlertManager": "workbench.alerts.manager",
    "AlertStore": "workbench.alerts.store",
    "AlertmanagerNotifier": "workbench.alerts.amsender",
    "AnomalyScore": "workbench.alerts.rules",
    "BacktestResult": "workbench.alerts.backtest",
    "BusNotifier": "workbench.alerts.mail",
    "Drift": "workbench.alerts.rules",
    "DuckDBStore": "workbench.alerts.store",
    "EmailNotifier": "workbench.alerts.mail",
    "ForecastDeviation": "workbench.alerts.rules",
    "Inhibit": "workbench.alerts.dispatch",
    "JsonlNotifier": "workbench.alerts.notifiers",
    "Matcher": "workbench.alerts.matchers",
    "Notifier": "workbench.alerts.notifiers",
    "NotifyError": "workbench.alerts.notifiers",
    "Outbox": "workbench.alerts.outbox",
    "PostgresStore": "workbench.alerts.store",
    "RateOfChange": "workbench.alerts.rules",
    "Route": "workbench.alerts.dispatch",
    "Rule": "workbench.alerts.rules",
    "Silence": "workbench.alerts.matchers",
    "SlackNotifier": "workbench.alerts.notifiers",
    "Threshold": "workbench.alerts.rules",
    "WebhookNotifier": "workbench.alerts.notifiers",
    "backtest": "workbench.alerts.backtest",
    "compare": "workbench.alerts.backtest",
    "load_config": "workbench.alerts.loader",
    "open_store": "workbench.alerts.store",
    "run_rule_tests": "workbench.alerts.promtest",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
