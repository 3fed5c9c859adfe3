"""The sha256 of a file, read in blocks (what identifies a content and a weights file)."""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
