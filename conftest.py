"""Root pytest configuration: modules that must not be imported by doctest collection."""

# These start the shared live pipeline or build a served app at import time: they are
# entry points for `panel serve`, not library modules.
collect_ignore = ["workbench/apps/setup_live.py", "workbench/apps/monitor_app.py", "apps"]

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _checkpoint_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed checkpoint key, so no test creates the per-user key file (tests of that unset it)."""
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY", "5e" * 32)
    monkeypatch.delenv("WORKBENCH_CHECKPOINT_KEY_FILE", raising=False)
    monkeypatch.delenv("WORKBENCH_CHECKPOINT_ENCRYPT", raising=False)
