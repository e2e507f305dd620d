"""Atomic file writes: a temporary name in the same folder, then `os.replace`."""

from __future__ import annotations

import os
import tempfile


class WriteError(OSError):
    """A file or folder of the run could not be written (full disk, read-only folder); names the path."""

    def __init__(self, message: str, errno: int = None):
        super().__init__(message)
        self.errno = errno


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Writes `data` to `path` so that readers see the old file or the whole new one, never a part.

    An OS error (full disk, unwritable folder) raises `WriteError` naming `path`; the old file stays.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(f"cannot write {path}: {e.strerror or e}", e.errno) from e
        raise
    return path


def write_text_atomic(path: str, text: str) -> str:
    return write_bytes_atomic(path, text.encode("utf-8"))
