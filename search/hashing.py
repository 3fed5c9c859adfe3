"""The sha256 of a file, read in blocks (what identifies a content and a weights file)."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return stream_sha256(fh)


def stream_sha256(fh: BinaryIO) -> str:
    """The sha256 of what is left to read in ``fh``."""
    digest = hashlib.sha256()
    while block := fh.read(BLOCK):
        digest.update(block)
    return digest.hexdigest()
