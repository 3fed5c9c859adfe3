"""What an indexing run did: counts per modality, skipped files and why, and timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from search.paths import shown

MODALITIES = ("image", "text", "audio", "video")


@dataclass
class ModalityCounts:
    """Files by outcome (a file = a path) and the vectors added, for one modality."""

    added: int = 0  # new path, new content: embedded
    updated: int = 0  # a known path whose content changed: re-embedded or re-linked
    unchanged: int = 0  # same size and mtime, or same sha256 as before
    linked: int = 0  # new path to content already indexed (a duplicate or a rename)
    removed: int = 0  # known path gone (vanished, or no longer indexable)
    refreshed: int = 0  # unchanged file re-embedded: the model that made its vectors was replaced
    vectors: int = 0  # vectors added (images 1 each, texts 1 per passage, audio 1 per window)

    def total_changed(self) -> int:
        return self.added + self.updated + self.linked + self.removed + self.refreshed


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": shown(self.path), "reason": self.reason}


@dataclass
class IndexReport:
    """The summary ``index_paths`` returns; ``to_json`` is what ``crossfind index --json`` prints."""

    roots: list[str] = field(default_factory=list)
    by_modality: dict[str, ModalityCounts] = field(
        default_factory=lambda: {m: ModalityCounts() for m in MODALITIES}
    )
    skipped: list[Skipped] = field(default_factory=list)
    partial: list[Skipped] = field(default_factory=list)  # indexed in part, and why
    ignored: int = 0  # files whose extension crossfind does not index
    workers: int = 0  # decoding processes used
    seconds: float = 0.0
    encode_seconds: float = 0.0  # time inside encoder calls
    scan_seconds: float = 0.0  # walking, hashing, linking and removing, before embedding
    # OCR in the decoding workers: images checked for text (--ocr auto), images read, seconds
    ocr_checked: int = 0
    ocr_read: int = 0
    ocr_seconds: float = 0.0
    # (seconds from the start of the run to the first batch written, its vectors): past it a
    # run goes at its steady rate (bench: Ray's actor start-up apart from its throughput)
    first_batch: tuple[float, int] | None = None

    def add_ocr(self, checked: int, read: int, seconds: float) -> None:
        self.ocr_checked += checked
        self.ocr_read += read
        self.ocr_seconds += seconds

    def count(self, modality: str, outcome: str, n: int = 1) -> None:
        counts = self.by_modality.setdefault(modality, ModalityCounts())
        setattr(counts, outcome, getattr(counts, outcome) + n)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    @property
    def model_busy_fraction(self) -> float:
        """Share of the run's wall time the model was computing (1.0 = never waited)."""
        return self.encode_seconds / self.seconds if self.seconds > 0 else 0.0

    def totals(self) -> ModalityCounts:
        out = ModalityCounts()
        for counts in self.by_modality.values():
            for f in fields(ModalityCounts):
                setattr(out, f.name, getattr(out, f.name) + getattr(counts, f.name))
        return out

    def rate(self, modality: str, what: str = "vectors") -> float:
        """Per-second rate of ``vectors`` (or files ``added``) of a modality over the run."""
        counts = self.by_modality.get(modality, ModalityCounts())
        value = counts.vectors if what == "vectors" else counts.added + counts.updated
        return value / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "roots": [shown(r) for r in self.roots],
            "by_modality": {m: asdict(c) for m, c in self.by_modality.items()},
            "totals": asdict(self.totals()),
            "skipped": [s.to_json() for s in self.skipped],
            "partial": [s.to_json() for s in self.partial],
            "ignored": self.ignored,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "scan_seconds": round(self.scan_seconds, 3),
            "model_busy_fraction": round(self.model_busy_fraction, 4),
            "ocr": {"checked": self.ocr_checked, "read": self.ocr_read,
                    "seconds": round(self.ocr_seconds, 3)},
        }
