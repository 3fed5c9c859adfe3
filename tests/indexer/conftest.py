from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexReport, index_paths
from search.index import Index
from search.settings import Settings, get_settings
from tests.indexer.corpus import CountingEncoder


def assert_consistent(index: Index) -> None:
    """FAISS ids and SQLite segment ids agree exactly."""
    store = np.sort(index.store.ids())
    rows = np.sort(index.catalog.segment_ids())
    assert store.tolist() == rows.tolist()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings(db=tmp_path / "db", workers=1, batch_size=4)


@pytest.fixture
def run_index(tmp_path: Path, settings: Settings) -> Callable[..., IndexReport]:
    """``run_index(encoder, *paths)`` on one index in tmp_path/db, opened and closed per run
    as the CLI does; the index is left consistent (checked) after each run."""

    def run(encoder: CountingEncoder, *paths: Path, **overrides: object) -> IndexReport:
        s = settings.model_copy(update=overrides)
        with Index.open_for_write(s.db, encoder.id, encoder.dim) as index:
            report = index_paths([str(p) for p in paths], index, encoder, s, progress=False)
            assert_consistent(index)
        return report

    return run
