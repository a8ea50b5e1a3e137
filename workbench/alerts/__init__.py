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

from workbench.alerts.amsender import AlertmanagerNotifier
from workbench.alerts.backtest import BacktestResult, backtest, compare
from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.loader import AlertConfig, load_config
from workbench.alerts.mail import BusNotifier, EmailNotifier
from workbench.alerts.manager import AlertManager
from workbench.alerts.matchers import Matcher, Silence
from workbench.alerts.notifiers import JsonlNotifier, Notifier, NotifyError, SlackNotifier, WebhookNotifier
from workbench.alerts.outbox import Outbox
from workbench.alerts.promtest import run_rule_tests
from workbench.alerts.rules import Absence, AnomalyScore, Drift, ForecastDeviation, RateOfChange, Rule, Threshold
from workbench.alerts.store import AlertStore, DuckDBStore, PostgresStore, open_store

__all__ = [
    "Absence",
    "AlertConfig",
    "AlertManager",
    "AlertmanagerNotifier",
    "AlertStore",
    "AnomalyScore",
    "BacktestResult",
    "BusNotifier",
    "Drift",
    "DuckDBStore",
    "EmailNotifier",
    "ForecastDeviation",
    "Inhibit",
    "JsonlNotifier",
    "Matcher",
    "Notifier",
    "NotifyError",
    "Outbox",
    "PostgresStore",
    "RateOfChange",
    "Route",
    "Rule",
    "Silence",
    "SlackNotifier",
    "Threshold",
    "WebhookNotifier",
    "backtest",
    "compare",
    "load_config",
    "open_store",
    "run_rule_tests",
]
