"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "os_errno"]


def os_errno(exc: BaseException) -> int | None:
    """The OS error number an exception stands for (an ``OSError``'s, or one a library wrapped in text).

    Examples
    --------
    >>> os_errno(RuntimeError("parquet: underlying IO error: No space left on device (os error 28)"))
    28
    >>> os_errno(ValueError("nothing to do with the OS")) is None
    True
    """
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    m = re.search(r"\(os error (\d+)\)", str(exc))
    return int(m.group(1)) if m else None


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` so that readers see the old file or the whole new one.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.bin"
    >>> atomic_write(p, lambda f: f.write(b"hello"))
    >>> p.read_bytes()
    b'hello'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            try:
                write(f)
            except OSError:
                raise
            except Exception as exc:  # polars wraps an OS error ("… (os error 28)") in its own types
                code = os_errno(exc)
                if code is None:
                    raise
                raise OSError(code, os.strerror(code), str(path)) from exc
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a write, flush or close: the error names no file, the message must
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
