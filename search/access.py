"""Which indexed files may still be read: the roots an index records, and the serve-time check.

An index records the roots it was built from (as named, their real paths, and whether
``--follow-links`` was given). Before any content leaves through the API (media, thumbnail,
item metadata, snippets), each path of the item is resolved again and must:

- lead to a real path inside the real path of a recorded root, or sit under a root indexed
  with ``--follow-links`` (whose links may lead anywhere, by the user's choice);
- be a regular file with the size and modification time that were indexed, and, where that
  is cheap (files up to ``HASH_MAX`` bytes, when one item is read), hold the indexed bytes
  (sha256).

An index made before roots were recorded has none: then a path that is itself a link must
lead to another indexed path (folders on the way may be links, as ~/Pictures -> /mnt/photos),
and the size and time must still match. Re-running ``crossfind index`` records the roots.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import BinaryIO

from search.catalog import Catalog, SegmentInfo
from search.hashing import stream_sha256

_ROOTS_KEY = "roots"
HASH_MAX = 1 << 20  # files up to 1 MiB are hashed when an item is read: ~2 ms at most


@dataclass(frozen=True)
class Root:
    """A root as given to ``crossfind index``."""

    path: str  # absolute, links kept as named: indexed paths start with it
    real: str  # its real path when it was indexed
    follow_links: bool = False


def recorded_roots(catalog: Catalog) -> list[Root]:
    raw = catalog.get_meta(_ROOTS_KEY)
    return [Root(**r) for r in json.loads(raw)] if raw else []


def record_roots(catalog: Catalog, roots: list[str], follow_links: bool) -> None:
    """Add ``roots`` to the index's record (a root indexed again takes this run's choice)."""
    new = {r: Root(r, os.path.realpath(r), follow_links) for r in roots}
    kept = [r for r in recorded_roots(catalog) if r.path not in new]
    # surrogates (names that are not UTF-8) are kept by json's \\u escapes
    catalog.set_meta(_ROOTS_KEY, json.dumps([asdict(r) for r in [*kept, *new.values()]]))


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


_O_PATH = getattr(os, "O_PATH", 0)
_PROC_FD = "/proc/self/fd"


def _resolve(path: str) -> tuple[str, os.stat_result]:
    """The real path of ``path`` and the stat of that very file. On Linux one ``open`` does
    both (the kernel resolves the links, so the answer cannot change between the two); else
    ``os.path.realpath`` then ``os.stat``.

    Raises:
        OSError: it does not exist or cannot be reached.
    """
    if _O_PATH and os.path.isdir(_PROC_FD):
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        try:
            return os.readlink(f"{_PROC_FD}/{fd}"), os.fstat(fd)
        finally:
            os.close(fd)
    real = os.path.realpath(path, strict=True)
    return real, os.stat(real)


NOT_REGULAR = "not a regular file (a FIFO, device, socket or folder): never read"


class NotRegular(OSError):
    """The path leads to a FIFO, device, socket or folder: reading it could block or never end."""


def open_regular(path: str) -> tuple[BinaryIO, str]:
    """Open ``path`` for reading only if it is a regular file: (the open file, its real path as
    the kernel resolved it for that very file). Whatever later happens to the names on the way
    (a file or folder swapped for a link), what is read from the returned file is the file
    whose real path was returned. A FIFO or device is never opened for reading (opening a FIFO
    waits for a writer; /dev/zero never ends).

    On Linux the file is first opened with ``O_PATH`` (no side effects, never blocks), checked,
    then reopened through ``/proc/self/fd``; elsewhere opened non-blocking, checked by ``fstat``,
    and its real path taken from ``os.path.realpath`` (best effort).

    Raises:
        NotRegular: not a regular file.
        OSError: it does not exist or cannot be read.
    """
    if _O_PATH and os.path.isdir(_PROC_FD):
        handle = os.open(path, _O_PATH | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                raise NotRegular(path)
            real = os.readlink(f"{_PROC_FD}/{handle}")
            fd = os.open(f"{_PROC_FD}/{handle}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(handle)
    else:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotRegular(path)
        real = os.path.realpath(path)
    return os.fdopen(fd, "rb"), real


def reopen_path(fh: BinaryIO, path: str) -> str:
    """A path that opens the very file ``fh`` holds, for libraries that take only a path
    (``/proc/self/fd/N`` on Linux, valid while ``fh`` is open; ``path`` elsewhere)."""
    return f"{_PROC_FD}/{fh.fileno()}" if os.path.isdir(_PROC_FD) else path


def _digest(fh: BinaryIO) -> str:
    digest = stream_sha256(fh)
    fh.seek(0)
    return digest


class Gate:
    """The serve-time check over one catalog; roots are read once per ``Gate``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.roots = recorded_roots(catalog)

    def open_path(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The real path to read for indexed ``path`` (recorded ``size``, ``mtime_ns``), or
        None when it is gone, changed, or now leads outside the indexed folders. Nothing is
        read: to read, use ``open_file`` (a name checked here may be swapped before a read)."""
        try:
            real, st = _resolve(path)
        except (OSError, ValueError):
            return None
        return real if self._passes(path, real, st, size, mtime_ns) else None

    def open_file(
        self, path: str, size: int, mtime_ns: int, sha256: str | None = None
    ) -> tuple[BinaryIO, str] | None:
        """Indexed ``path`` opened for reading, with its real path, when it passes: checked on
        the open descriptor itself, so what is read from it is the indexed file whatever later
        happens to the names on the way. With ``sha256``, files up to ``HASH_MAX`` bytes must
        hash to it. None when it does not pass (a FIFO or device is never opened to read)."""
        try:
            fh, real = open_regular(path)
        except (OSError, ValueError):
            return None
        try:
            ok = self._passes(path, real, os.fstat(fh.fileno()), size, mtime_ns) and (
                not sha256 or size > HASH_MAX or _digest(fh) == sha256
            )
        except OSError:
            ok = False
        if ok:
            return fh, real
        fh.close()
        return None

    def _passes(self, path: str, real: str, st: os.stat_result, size: int, mtime_ns: int) -> bool:
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return False
        return self._allowed(path, real)

    def _allowed(self, path: str, real: str) -> bool:
        if not self.roots:
            return self._allowed_unrecorded(path, real)
        return any(
            inside(real, r.real) or (r.follow_links and inside(path, r.path)) for r in self.roots
        )

    def _allowed_unrecorded(self, path: str, real: str) -> bool:
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            return False
        return not is_link or self.catalog.file(real) is not None

    def readable(self, info: SegmentInfo, hash_small: bool = False) -> list[tuple[str, str]]:
        """(indexed path, real path to read) for each path of ``info`` that passes; with
        ``hash_small`` files up to ``HASH_MAX`` bytes must also hash to the indexed sha256."""
        out = []
        for path, (size, mtime_ns) in _stats(info):
            if not hash_small:
                real = self.open_path(path, size, mtime_ns)
                if real is not None:
                    out.append((path, real))
                continue
            opened = self.open_file(path, size, mtime_ns, info.sha256)
            if opened is not None:
                opened[0].close()
                out.append((path, opened[1]))
        return out

    def open(self, info: SegmentInfo) -> tuple[BinaryIO, str] | None:
        """The file of ``info`` to serve, opened, and its real path (``open_file`` on its paths
        in turn), or None when none passes. The caller closes it."""
        for path, (size, mtime_ns) in _stats(info):
            opened = self.open_file(path, size, mtime_ns, info.sha256)
            if opened is not None:
                return opened
        return None

    def restrict(self, info: SegmentInfo) -> SegmentInfo | None:
        """``info`` with only its paths that pass, hashes included (None when none does)."""
        ok = {path for path, _ in self.readable(info, hash_small=True)}
        if not ok:
            return None
        keep = [i for i, p in enumerate(info.paths) if p in ok]
        info.paths = [info.paths[i] for i in keep]
        if info.stats:
            info.stats = [info.stats[i] for i in keep]
        return info


def _stats(info: SegmentInfo) -> list[tuple[str, tuple[int, int]]]:
    """(path, (size, mtime_ns) indexed) for each path of ``info``."""
    return list(zip(info.paths, info.stats or [(info.size, info.mtime_ns)] * len(info.paths)))
