"""Checkpoints: one file per pipeline, written atomically with a checksum and versions.

Format: a header line ``WBCKPT1 <sha256>``, then a pickle of the state dict.
Checkpoints are local state of a trusted process (pickle is not for untrusted files).

Examples
--------
>>> import tempfile
>>> store = CheckpointStore(tempfile.mkdtemp())
>>> store.save({"epoch": 3, "nodes": {}})
>>> store.load()["epoch"]
3
"""

from __future__ import annotations

import hashlib
import pickle
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from workbench.errors import CheckpointError
from workbench.storage.atomic import atomic_write

__all__ = ["CheckpointStore", "library_versions"]

_MAGIC = b"WBCKPT1"
_TRACKED = ("workbench", "polars", "river", "streamz")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose objects a checkpoint may contain."""
    out = {}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class CheckpointStore:
    """Where one pipeline keeps its checkpoint.

    Parameters
    ----------
    folder
        Folder for ``checkpoint.bin``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "checkpoint.bin"

    def exists(self) -> bool:
        """Whether a checkpoint was written."""
        return self.path.exists()

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically, stamped with library versions."""
        body = pickle.dumps({**state, "versions": library_versions()}, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.sha256(body).hexdigest().encode()

        def write(f: BinaryIO) -> None:
            f.write(_MAGIC + b" " + digest + b"\n")
            f.write(body)

        atomic_write(self.path, write)

    def load(self) -> dict[str, Any] | None:
        """Read and verify the checkpoint; ``None`` when there is none."""
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        head, _, body = data.partition(b"\n")
        parts = head.split(b" ")
        if len(parts) != 2 or parts[0] != _MAGIC:
            raise CheckpointError(f"checkpoint {self.path}: not a Workbench checkpoint (bad header)")
        if hashlib.sha256(body).hexdigest().encode() != parts[1]:
            raise CheckpointError(f"checkpoint {self.path}: checksum mismatch; the file is corrupt")
        state = pickle.loads(body)  # noqa: S301 - our own file, verified above
        saved = state.get("versions", {})
        now = library_versions()
        for lib in ("polars", "river"):
            if lib in saved and saved[lib] != "absent" and _minor(saved[lib]) != _minor(now[lib]):
                raise CheckpointError(
                    f"checkpoint {self.path}: written with {lib} {saved[lib]}, this is {lib} "
                    f"{now[lib]}; state pickles are not portable across minor versions. "
                    "Delete the checkpoint to start over, or install the version it names."
                )
        return state

    def clear(self) -> None:
        """Remove the checkpoint."""
        if self.path.exists():
            self.path.unlink()
