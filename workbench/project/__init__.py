"""Bring your own data: project files, schema drafts, checks of a file against a schema.

- :class:`~workbench.project.config.Project`: a ``workbench.yaml`` (``workbench init``
  writes a commented one) and the pipeline it describes, the same from the command line
  (``--project``) and in a notebook (``wb.Project.load(path).pipeline()``);
- ``workbench schema infer FILE`` (:mod:`workbench.project.infer`) and ``workbench
  schema check FILE --schema S`` (:mod:`workbench.project.check`).

The command line is in :mod:`workbench.project.cli`.
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {"Project": "workbench.project.config"}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
