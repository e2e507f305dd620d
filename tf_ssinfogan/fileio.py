"""Atomic file writes: a temporary name in the same folder, then `os.replace`."""

from __future__ import annotations

import os
import tempfile


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Writes `data` to `path` so that readers see the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text_atomic(path: str, text: str) -> str:
    return write_bytes_atomic(path, text.encode("utf-8"))
