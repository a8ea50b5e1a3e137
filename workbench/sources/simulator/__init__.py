"""The built-in simulator: a fleet of hosts, scheduled incidents and injected faults.

=============  ==========================================================
module         holds
=============  ==========================================================
``source``     :class:`Simulator` (a :class:`~workbench.sources.base.Source`)
               and :func:`write_simulation` (events + labels + faults on disk)
``fleet``      the hosts, services and their normal behaviour
``incidents``  incident kinds and their schedule (the ground truth)
``faults``     bad, duplicate and late records mixed in, and their log
``chunks``     one chunk of simulated events, generated vectorised
=============  ==========================================================
"""

from workbench.sources.simulator.source import INCIDENT_CYCLE, SimulatedData, Simulator, write_simulation

__all__ = ["INCIDENT_CYCLE", "SimulatedData", "Simulator", "write_simulation"]
