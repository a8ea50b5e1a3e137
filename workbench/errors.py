"""One exception root for Workbench.

The tree::

    WorkbenchError
    ├── ConfigError        a user-supplied value breaks a rule (names thing, rule, value)
    ├── SchemaError        an event schema or frame does not fit its declaration
    ├── CheckpointError    a checkpoint is missing, corrupt or written by an incompatible version
    ├── SourceError        a source cannot be opened, read or positioned
    ├── SinkError          an external sink (PostgreSQL) cannot be reached or written
    ├── EncryptionError    encrypted data (the lake, a backup) without its key, or with the wrong one
    ├── AccessError        an action refused: not signed in, or the user's role does not allow it
    ├── WorkerLostError    a cluster worker holding key groups was lost: the pipeline restores and replays
    ├── _KeyError          a project file's key and its problem, caught by
    │                      Project.load and raised as a ConfigError naming the file (workbench.project.config)
    ├── PublishError       a message could not be published to the bus          (workbench.bus.base)
    ├── NotifyError        a notification could not be delivered               (workbench.alerts.notifiers)
    ├── StoreError         the alert store cannot be opened, written or read   (workbench.alerts.store)
    └── ReportError        a report or export cannot be made                   (workbench.reports.errors)
        ├── ExportError    a view cannot be exported (offline HTML or PNG)
        └── NotebookError  a report notebook failed (the cell, the exception, the kept notebook)

Errors defined in a wing's own module are raised by that wing only; every one derives
from ``WorkbenchError``, so ``except WorkbenchError`` (what the ``workbench`` command
does) catches them all. A test checks that this tree names every class (a private one,
``_Name``, is caught in its own module and never leaves it).

``WorkbenchWarning`` is the root of our warnings; the test-suite turns it into an error.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "CheckpointError",
    "ConfigError",
    "EncryptionError",
    "SchemaError",
    "SinkError",
    "SourceError",
    "WorkbenchError",
    "WorkerLostError",
    "WorkbenchWarning",
]


class WorkbenchError(Exception):
    """Root of every error Workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A user-supplied value breaks a rule.

    Examples
    --------
    >>> raise ConfigError("window 'cpu_10s': size must be > 0, not -5s")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: window 'cpu_10s': size must be > 0, not -5s
    """


class SchemaError(WorkbenchError):
    """An event schema, or a frame that should follow one, is inconsistent."""


class CheckpointError(WorkbenchError):
    """A checkpoint cannot be written, read, verified or restored."""


class SourceError(WorkbenchError):
    """A source cannot be opened, read or positioned."""


class SinkError(WorkbenchError):
    """An external sink (a database) cannot be reached or written."""


class EncryptionError(WorkbenchError):
    """Encrypted data (the lake, a backup) cannot be read: its key is missing or wrong, or it was altered."""


class AccessError(WorkbenchError, PermissionError):
    """An action refused: nobody signed in, or the user's role does not allow it (names user, role, action)."""


class WorkerLostError(WorkbenchError):
    """A cluster worker holding key groups was lost (or could not be reached).

    A pipeline catches it: it restores every node and key group from its newest
    checkpoint onto the live workers and replays from the checkpoint's source offset.
    Operators re-raise it instead of applying their error policy.
    """


class WorkbenchWarning(UserWarning):
    """Root of Workbench's warnings."""
