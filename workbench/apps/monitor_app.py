"""Served file used when no ``apps/monitor.py`` checkout is present (installed package)."""

from workbench.apps.monitor import create_app

create_app().servable()
