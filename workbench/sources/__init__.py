"""Sources: where events come from (files, the simulator; brokers come with the connectors)."""

from workbench.sources.base import RawBatch, Source
from workbench.sources.faults import Faults
from workbench.sources.files import FileSource
from workbench.sources.incidents import Incident
from workbench.sources.simulator import Simulator, write_simulation

__all__ = ["Faults", "FileSource", "Incident", "RawBatch", "Simulator", "Source", "write_simulation"]
