"""Whole-file writes that a crash or a full disk cannot leave half done."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temp_path(path: Path) -> Path:
    """Where ``write_atomically`` stages ``path``."""
    return path.with_name(path.name + ".tmp")


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(fh)`` into a temp file beside ``path``, fsync it, rename it into place.

    Afterwards ``path`` is the old file or the new one, never part of one; on any error
    (ENOSPC included) the temp file is removed and the error raised.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
