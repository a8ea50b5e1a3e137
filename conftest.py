"""Root pytest configuration: modules that must not be imported by doctest collection."""

# These start the shared live pipeline or build a served app at import time: they are
# entry points for `panel serve`, not library modules.
collect_ignore = ["workbench/apps/setup_live.py", "workbench/apps/monitor_app.py", "apps"]
