"""Root pytest configuration: modules that must not be imported by doctest collection."""

# These start the shared live pipeline or build a served app at import time: they are
# entry points for `panel serve`, not library modules.
collect_ignore = ["workbench/apps/setup_live.py", "workbench/apps/monitor_app.py", "apps"]

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """No test, and no server a session fixture starts, writes checkpoints or lake files into the checkout.

    ``data/checkpoints`` is the default of a served app started in the checkout: tests that
    shared it read each other's served alert state (written with another key).
    """
    scratch = Path(tempfile.mkdtemp(prefix="wb-tests-"))
    config.add_cleanup(lambda: shutil.rmtree(scratch, ignore_errors=True))
    os.environ["WORKBENCH_CHECKPOINTS"] = str(scratch / "checkpoints")
    os.environ["WORKBENCH_LAKE"] = str(scratch / "lake")


@pytest.fixture(autouse=True)
def _checkpoint_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed checkpoint key, so no test creates the per-user key file (tests of that unset it)."""
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY", "5e" * 32)
    monkeypatch.delenv("WORKBENCH_CHECKPOINT_KEY_FILE", raising=False)
    monkeypatch.delenv("WORKBENCH_CHECKPOINT_ENCRYPT", raising=False)


@pytest.fixture(autouse=True)
def _own_files(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test's served app or live pipeline keeps its checkpoints and lake apart from every other's."""
    scratch = tmp_path_factory.mktemp("wb")
    monkeypatch.setenv("WORKBENCH_CHECKPOINTS", str(scratch / "checkpoints"))
    monkeypatch.setenv("WORKBENCH_LAKE", str(scratch / "lake"))
