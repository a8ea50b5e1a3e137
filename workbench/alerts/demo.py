"""Default rules for the simulator's server metrics (what ``workbench serve`` starts with).

Each matches one kind of incident the simulator injects: CPU saturation, a memory leak,
an error burst, and a host going silent.

Examples
--------
>>> [r.name for r in server_rules()]
['cpu_saturated', 'memory_high', 'error_burst', 'host_silent']
"""

from __future__ import annotations

from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.matchers import parse_matchers
from workbench.alerts.rules import Absence, Rule, Threshold

__all__ = ["server_inhibit", "server_routes", "server_rules"]


def server_rules(*, window_s: float = 5.0) -> list[Rule]:
    """Rules over ``server_metrics`` windows (``for`` of a few windows of ``window_s`` seconds)."""
    w = max(window_s, 1.0)
    return [
        Threshold(
            "cpu_saturated",
            metric="cpu_mean",
            value=90,
            for_=3 * w,
            keep_firing_for=3 * w,
            severity="critical",
            summary="{entity}: cpu {value:.0f}% (saturated)",
        ),
        Threshold(
            "memory_high",
            metric="mem_max",
            value=95,
            for_=3 * w,
            keep_firing_for=3 * w,
            severity="warning",
            summary="{entity}: memory {value:.1f}%",
        ),
        Threshold(
            "error_burst",
            metric="error_rate",
            value=0.25,
            for_=2 * w,
            keep_firing_for=2 * w,
            severity="critical",
            summary="{entity}: {value:.0%} errors",
        ),
        Absence("host_silent", after=6 * w, severity="page", summary="{entity}: no data for {value:.0f} s"),
    ]


def server_routes() -> list[Route]:
    """One group per rule, notified after 10 s, then at most every minute."""
    return [Route(receivers=(), group_by=("alertname",), group_wait="10s", group_interval="1m", repeat_interval="1h")]


def server_inhibit() -> list[Inhibit]:
    """A silent host mutes its other alerts."""
    source, target = parse_matchers('alertname="host_silent"'), parse_matchers('alertname!="host_silent"')
    return [Inhibit(source, target, ("host",))]
