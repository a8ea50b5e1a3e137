"""Live monitor: ``workbench serve`` (or ``panel serve apps/monitor.py``) serves it at /monitor."""

from workbench.apps.monitor import create_app

create_app().servable()
