"""Sources: where events come from (files, the simulator, brokers and scrapes via ``from_url``)."""

from workbench.sources.base import RawBatch, Source
from workbench.sources.faults import Faults
from workbench.sources.files import FileSource
from workbench.sources.incidents import Incident
from workbench.sources.simulator import Simulator, write_simulation
from workbench.sources.urls import from_url

__all__ = ["Faults", "FileSource", "Incident", "RawBatch", "Simulator", "Source", "from_url", "write_simulation"]
