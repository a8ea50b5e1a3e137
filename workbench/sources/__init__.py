"""Sources: where events come from (files, the simulator, brokers and scrapes via ``from_url``).

Names are imported on first use, so ``import workbench.sources.base`` stays light
(a command that reads a file never imports the simulator or a broker client).
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Faults": "workbench.sources.simulator.faults",
    "FileSource": "workbench.sources.files",
    "FrameSource": "workbench.sources.frames",
    "Incident": "workbench.sources.simulator.incidents",
    "RawBatch": "workbench.sources.base",
    "Simulator": "workbench.sources.simulator",
    "Source": "workbench.sources.base",
    "from_url": "workbench.sources.factory",
    "write_simulation": "workbench.sources.simulator",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
