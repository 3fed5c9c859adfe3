"""``--store milvus:<spec>``: the forms it takes and where a relative file lies.

``<spec>`` is ``<uri>[#collection]``: a Milvus server URI (``http://host:19530``, ``https://``,
``tcp://``, ``unix:``) kept as given, or a Milvus Lite file ending in ``.db``. A relative file
is taken from the current directory when the spec is parsed, and the manifest records it
relative to the index folder when it lies inside it (``record_spec``), so that folder can move
as one; ``resolve_spec`` turns a recorded spec back into a usable one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from search.errors import BadRequest

SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``uri[#collection]`` -> (uri, collection or None)."""
    uri, sep, name = spec.partition("#")
    return uri, (name if sep else None)


def is_server(uri: str) -> bool:
    return uri.lower().startswith(SERVER_SCHEMES)


def check_spec(spec: str) -> str:
    """The ``--store milvus:<spec>`` validator: a server URI kept as given, or a Milvus Lite
    file (``*.db``) made absolute from the current directory. Raises BadRequest."""
    uri, name = split_spec(spec.strip())
    forms = "milvus:./vectors.db (Milvus Lite, embedded) or milvus:http://host:19530[#collection]"
    if not uri or uri == "auto":
        raise BadRequest(f"--store milvus needs a location: use {forms}")
    if name is not None and not _valid_name(name):
        raise BadRequest(
            f"--store milvus:{spec}: the collection name {name!r} must start with a letter or _ and "
            "hold only letters, digits and _ (at most 255)"
        )
    if not is_server(uri):
        if not uri.endswith(".db"):
            raise BadRequest(f"--store milvus:{spec} is neither a server URI nor a Milvus Lite file "
                             f"ending in .db; use {forms}")
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri + (f"#{name}" if name is not None else "")


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 255 and (name[0].isalpha() or name[0] == "_") and all(
        c.isalnum() or c == "_" for c in name) and name.isascii()


def resolve_spec(spec: str, root: Path) -> str:
    """A recorded spec as a usable one: a relative Lite file is relative to the index folder."""
    uri, name = split_spec(spec)
    if not is_server(uri) and not os.path.isabs(uri):
        uri = str((Path(root) / uri).resolve())
    return uri + (f"#{name}" if name is not None else "")


def record_spec(spec: str, root: Path) -> str:
    """The spec to record in the manifest: a Lite file inside the index folder relative to it,
    so the folder can move as one; everything else as given."""
    uri, name = split_spec(spec)
    if not is_server(uri):
        with contextlib.suppress(ValueError):  # outside the folder: kept absolute
            uri = str(Path(uri).resolve().relative_to(Path(root).resolve()))
    return uri + (f"#{name}" if name is not None else "")
