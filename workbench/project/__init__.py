"""Bring your own data: draft a schema from a file, check a file against a schema.

``workbench schema infer FILE`` (:mod:`workbench.project.infer`) and ``workbench schema
check FILE --schema S`` (:mod:`workbench.project.check`); their command line is in
:mod:`workbench.project.cli`.
"""
