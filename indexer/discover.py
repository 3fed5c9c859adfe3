"""Walking the roots given on the command line: files, no symlink loops, hidden names skipped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from search.access import inside
from search.errors import NotFound


@dataclass(frozen=True)
class Found:
    """A regular file found under a root, with the stat fields the indexer compares."""

    path: str  # absolute; symlinked files keep the path they were found under
    size: int
    mtime_ns: int


def resolve_roots(paths: Iterable[str | Path]) -> list[str]:
    """Absolute, normalised roots (symlinks kept as named). A missing root is an error, not an
    empty folder: treating an unmounted disk as empty would remove its files from the index.

    Raises:
        NotFound: a path does not exist.
    """
    roots: list[str] = []
    for p in paths:
        root = os.path.abspath(os.path.expanduser(str(p)))
        if not os.path.exists(root):
            raise NotFound(f"{p}: no such file or folder; check the path (nothing was indexed)")
        if root not in roots:
            roots.append(root)
    return roots


def is_hidden(name: str) -> bool:
    return name.startswith(".")


LEAVES = "link leaves the indexed folders"
OWN_FOLDER = "the index's own folder (--db) is never indexed"


def walk(
    roots: Iterable[str], include_hidden: bool = False, follow_links: bool = False,
    exclude: Iterable[str] = (),
) -> Iterator[Found | tuple[str, str]]:
    """Regular files under ``roots``, each once, in sorted order.

    Yields ``Found`` for files and ``(path, reason)`` for entries that cannot be read (an
    unreadable folder, a broken symlink). A folder reached twice (a symlink loop, or two links
    to one folder) is walked once: real folders are tracked by (st_dev, st_ino).

    Unless ``follow_links``, a link (to a file or a folder) whose real path is outside the real
    paths of every root is not followed: it is reported with ``LEAVES``. Links within the roots
    are followed (a linked file is one more path to content indexed once).

    Folders in ``exclude`` (the index's own, whose thumbnail cache would otherwise be indexed,
    and again each run) are reported with ``OWN_FOLDER``, however they are reached.
    """
    roots = list(roots)
    real_roots = None if follow_links else [os.path.realpath(r) for r in roots]
    seen_dirs: set[tuple[int, int]] = set()
    excluded: set[tuple[int, int]] = set()
    for folder in exclude:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        excluded.add((st.st_dev, st.st_ino))
    seen_files: set[str] = set()
    for root in roots:
        yield from _walk_one(
            root, include_hidden, seen_dirs, seen_files, real_roots, excluded, top=True
        )


def _leaves(path: str, real_roots: list[str] | None) -> bool:
    """Whether ``path`` is a link leading outside every real root (never when following)."""
    if real_roots is None or not os.path.islink(path):
        return False
    real = os.path.realpath(path)
    return not any(inside(real, r) for r in real_roots)


def _walk_one(
    path: str,
    include_hidden: bool,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[str],
    real_roots: list[str] | None,
    excluded: set[tuple[int, int]],
    top: bool = False,
) -> Iterator[Found | tuple[str, str]]:
    if not top and _leaves(path, real_roots):
        yield path, LEAVES
        return
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        yield path, "broken symlink"
        return
    except OSError as exc:
        yield path, f"unreadable: {exc.strerror or exc}"
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in excluded:
            yield path, OWN_FOLDER
            return
        if key in seen_dirs:
            return  # a loop or a second link to a folder already walked
        seen_dirs.add(key)
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            yield path, f"unreadable folder: {exc.strerror or exc}"
            return
        for name in names:
            if is_hidden(name) and not include_hidden:
                continue
            yield from _walk_one(
                os.path.join(path, name), include_hidden, seen_dirs, seen_files, real_roots,
                excluded,
            )
    elif stat.S_ISREG(st.st_mode):
        if path not in seen_files:
            seen_files.add(path)
            yield Found(path, st.st_size, st.st_mtime_ns)
    elif top:
        yield path, "not a regular file or folder"
    # sockets, FIFOs and devices met inside folders are ignored silently: never indexable
