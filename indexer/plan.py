"""The scan: compare the files under the roots with the catalog and decide what to do.

Unchanged files (same size and mtime) are not read. Others are hashed: content already in the
index is linked to the path (a duplicate, a rename, or a touched file), new content is planned
for embedding, identical new files once. Paths that vanished, or whose file can no longer be
indexed, are removed — after the links, so a renamed file keeps its vectors. Content whose
vectors a replaced model made (``stale_before``) is embedded again, with all its paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from indexer.discover import Found, walk
from indexer.loaders import Probe, Skip, probe_many
from indexer.report import IndexReport
from indexer.sniff import modality_of_extension
from indexer.workers import Workers
from search.catalog import Catalog, FileState
from search.index import Index
from search.settings import Settings

_PROBE_CHUNK = 16


@dataclass
class Pending:
    """A new content to embed: the first path is decoded, every path is stored with it."""

    sha256: str
    modality: str
    size: int
    files: list[tuple[str, int, int]] = field(default_factory=list)  # (path, size, mtime_ns)
    known: set[str] = field(default_factory=set)  # paths indexed before with other content
    refresh: bool = False  # indexed content embedded again: its model was replaced

    @property
    def path(self) -> str:
        return self.files[0][0]


def scan(
    roots: Sequence[str],
    index: Index,
    settings: Settings,
    workers: Workers,
    report: IndexReport,
    *,
    audio_ok: Callable[[], bool],
    progress: Callable[[int, str], object] | None = None,
    stale_before: Callable[[str], float] = lambda modality: 0.0,
) -> tuple[list[Pending], bool]:
    """Link, remove and plan. Returns (contents to embed, whether the store changed).

    ``stale_before(modality)``: contents of that modality created earlier were embedded by a
    model since replaced; they are planned again (all their paths, this file's first).
    """
    catalog = index.catalog
    known = catalog.file_states(roots)
    handled: set[str] = set()  # known paths that stay (or were already removed)
    refresh: dict[int, tuple[str, int, int]] = {}  # stale content id -> a path seen now

    def stale(state: FileState) -> bool:
        return state.created_at < stale_before(state.modality)
    to_probe: list[Found] = []
    cap = int(settings.max_file_mb * 1024 * 1024)
    # never the index's own folder (its thumbnail cache), should it sit under a root
    for entry in walk(roots, settings.include_hidden, settings.follow_links, [str(index.root)]):
        if isinstance(entry, tuple):
            report.skip(*entry)
            continue
        if modality_of_extension(entry.path) is None:
            report.ignored += 1
            continue
        old = known.get(entry.path)
        if old is not None and (old.size, old.mtime_ns) == (entry.size, entry.mtime_ns):
            handled.add(entry.path)
            if stale(old):
                refresh.setdefault(old.content_id, (entry.path, entry.size, entry.mtime_ns))
            else:
                report.count(old.modality, "unchanged")
        elif entry.size == 0:
            report.skip(entry.path, "empty file")
        elif entry.size > cap:
            report.skip(
                entry.path,
                f"over the size cap: {entry.size / 2**20:.3g} MB > {settings.max_file_mb:g} MB"
                " (raise CROSSFIND_MAX_FILE_MB to index it)",
            )
        else:
            to_probe.append(entry)

    changed = False
    pending: dict[str, Pending] = {}
    bar = progress(len(to_probe), "hashing") if progress and len(to_probe) > 200 else None
    for chunk in _probe_all(to_probe, workers):
        to_plan: list[tuple[Found, Probe, bool]] = []
        for found, result in chunk:
            path = found.path
            if isinstance(result, Skip) or result.reason:
                report.skip(path, result.reason or "unreadable")
                continue
            if result.modality == "audio" and not audio_ok():
                report.skip(path, "no audio encoder")
                continue
            old = known.get(path)
            if old is not None and old.sha256 == result.sha256:  # touched, not changed
                catalog.link_file(path, old.content_id, found.size, found.mtime_ns)
                handled.add(path)
                if stale(old):
                    refresh.setdefault(old.content_id, (path, found.size, found.mtime_ns))
                else:
                    report.count(old.modality, "unchanged")
                continue
            if old is not None:  # changed: the old content leaves this path first
                index.remove_segments(catalog.remove_paths([path]))
                changed = True
                handled.add(path)
            to_plan.append((found, result, old is not None))
        # looked up after this chunk's removals, so a content they dropped is not linked to
        existing = catalog.contents_by_sha([probe.sha256 for _, probe, _ in to_plan])
        for found, probe, was_known in to_plan:
            _plan_one(catalog, existing, probe, found, was_known, pending, report, handled)
        if bar is not None:
            bar.update(len(chunk))  # type: ignore[attr-defined]
    if bar is not None:
        bar.close()  # type: ignore[attr-defined]

    if refresh:
        changed = _plan_refresh(catalog, index, refresh, pending) or changed
    gone = [p for p in known if p not in handled]
    if gone:
        for p in gone:
            report.count(known[p].modality, "removed")
        index.remove_segments(catalog.remove_paths(gone))
        changed = True
    return list(pending.values()), changed


def _plan_refresh(catalog: Catalog, index: Index, refresh: dict[int, tuple[str, int, int]],
                  pending: dict[str, Pending]) -> bool:
    """Take stale contents out of the index and plan them again with every path they had
    (the path seen now is decoded). Until they are written back they are absent, never wrong;
    a run stopped in between finds them as new files."""
    contents = catalog.contents_info(list(refresh))
    files = catalog.files_of(list(refresh))
    index.remove_segments(catalog.remove_contents(list(refresh)))
    for content_id, seen in refresh.items():
        sha256, modality, size = contents[content_id]
        item = pending.get(sha256)
        if item is None:
            item = pending[sha256] = Pending(sha256, modality, size, refresh=True)
        item.files = [seen, *(f for f in item.files if f[0] != seen[0]),
                      *(f for f in files.get(content_id, []) if f[0] != seen[0])]
    return True


def _plan_one(
    catalog: Catalog,
    existing: dict[str, tuple[int, str]],
    probe: Probe,
    found: Found,
    was_known: bool,
    pending: dict[str, Pending],
    report: IndexReport,
    handled: set[str],
) -> None:
    """Link the file to indexed content with its sha256, or plan the content for embedding."""
    if probe.sha256 in existing:
        content_id, modality = existing[probe.sha256]
        catalog.link_file(found.path, content_id, found.size, found.mtime_ns)
        report.count(modality, "updated" if was_known else "linked")
        handled.add(found.path)
        return
    item = pending.get(probe.sha256)
    if item is None:
        assert probe.modality is not None
        item = pending[probe.sha256] = Pending(probe.sha256, probe.modality, found.size)
    item.files.append((found.path, found.size, found.mtime_ns))
    if was_known:
        item.known.add(found.path)


def _probe_all(
    files: list[Found], workers: Workers
) -> Iterator[list[tuple[Found, Probe | Skip]]]:
    """Probe results in chunks, in the order of ``files``, hashing in the worker pool."""
    chunks = [files[i : i + _PROBE_CHUNK] for i in range(0, len(files), _PROBE_CHUNK)]
    window = max(2, 2 * workers.n)
    futures = [workers.submit(probe_many, [f.path for f in c]) for c in chunks[:window]]
    for i, chunk in enumerate(chunks):
        if i + window < len(chunks):
            futures.append(workers.submit(probe_many, [f.path for f in chunks[i + window]]))
        yield list(zip(chunk, futures[i].result()))
        futures[i] = None  # type: ignore[call-overload]  # free the results
