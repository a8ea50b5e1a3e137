"""Benchmarks (``workbench bench …``): each measured against a baseline in the same run.

=================  ==============================================================
module             measures
=================  ==============================================================
``engine``         streaming replay against an offline polars computation
``models``         score nodes on the simulator's labelled incidents
``alerts``         rules × entities per window, beside plain polars filters
``connectors``     events/s from each broker into windows vs its publish rate
``ui``             event-to-screen latency of the served monitor in chromium
``startup``        start-up of the ``workbench`` command against ``import polars``
=================  ==============================================================

Results are recorded in ``docs/BENCHMARKS.md``.
"""
