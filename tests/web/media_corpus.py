"""A small real index of a video (red then green scene, low then high tone) and a PDF, built
through the real indexer with the fake encoder."""

from __future__ import annotations

from pathlib import Path

from indexer import index_paths
from search.index import Index
from search.settings import get_settings
from tests.fakes import FakeEncoder
from tests.indexer.documents import pdf
from tests.indexer.videos import colour_scene, make_video, tone


def build(root: Path) -> Path:
    scenes = [colour_scene(c, seed=i) for i, c in enumerate([(220, 20, 30), (30, 200, 40)])]
    make_video(root / "files" / "clip.mp4", scenes, sounds=[tone(300), tone(3000)], codec="libx264")
    pdf(root / "files" / "paper.pdf", ["first page words", "the walrus chapter"])
    settings = get_settings(db=root / "db", workers=0)
    enc = FakeEncoder()
    with Index.open_for_write(settings.db, enc.id, enc.dim) as index:
        report = index_paths([root / "files"], index, enc, settings, progress=False)
    assert report.skipped == [], report.skipped
    return settings.db
