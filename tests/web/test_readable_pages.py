"""Pages of search results hold only files that may still be read, and still hold ``k`` of
them: hits of files gone, changed or now leading out of the roots are left out before the
page is cut, so ``offset`` counts shown hits only (no hit skipped or repeated across pages)."""

from __future__ import annotations

import os

import pytest

import search.ranking
from tests.indexer.corpus import text
from tests.web.conftest import make_client
from tests.web.test_hostile_fs import _index

QUERY = "harbour"
N = 16


@pytest.fixture
def notes(tmp_path):
    """16 notes that all match the query, each diluted by a different number of other words
    (so each has its own score), indexed; then the app over them."""
    folder = tmp_path / "notes"
    for i in range(N):
        text(folder / f"n{i:02d}.txt", " ".join([QUERY] + [f"word{i}x{j}" for j in range(i)]))
    _index(tmp_path / "db", folder)
    return folder


def _search(c, **body) -> list[dict]:
    r = c.post("/api/search", json={"parts": [{"text": QUERY}], **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _spoil(folder, paths: list[str]) -> None:
    """Make these files unreadable, each a different way: deleted, rewritten (size and time
    change), swapped for a link to a file outside the indexed folder."""
    outside = folder.parent / "outside.txt"
    outside.write_text("a secret outside the indexed folder")
    for n, path in enumerate(paths):
        how = n % 3
        if how == 0:
            os.unlink(path)
        elif how == 1:
            with open(path, "a") as fh:
                fh.write(" and more")
        else:
            os.unlink(path)
            os.symlink(outside, path)


def test_a_page_holds_k_readable_hits_when_top_files_are_gone(notes):
    with make_client(notes.parent / "db") as c:
        ranked = [h["path"] for h in _search(c, k=100)]
        assert len(ranked) == N
        gone = [ranked[0], ranked[2], ranked[3]]
        _spoil(notes, gone)
        readable = [p for p in ranked if p not in gone]
        r = c.post("/api/search", json={"parts": [{"text": QUERY}], "k": 5})
        assert [h["path"] for h in r.json()["results"]] == readable[:5]
        assert not any(p in r.text for p in gone) and "secret" not in r.text
        # the search page (one page of 24) shows every readable one, none of the others
        page = c.get("/", params={"q": QUERY, "show": "all"})
        assert page.status_code == 200 and "secret" not in page.text
        names = [os.path.basename(p) for p in readable]
        assert sorted(names, key=page.text.index) == names
        assert not any(os.path.basename(p) in page.text for p in gone)


@pytest.mark.parametrize("k", [3, 5])
def test_walking_pages_shows_every_readable_match_once_in_order(notes, k):
    with make_client(notes.parent / "db") as c:
        ranked = [h["path"] for h in _search(c, k=100)]
        gone = ranked[1:4] + ranked[6:8] + ranked[-1:]
        _spoil(notes, gone)
        readable = [p for p in ranked if p not in gone]
        walked: list[str] = []
        for offset in range(0, N, k):
            page = [h["path"] for h in _search(c, k=k, offset=offset)]
            assert len(page) == min(k, max(0, len(readable) - offset))
            walked += page
        assert walked == readable


def test_thresholds_still_cut_and_relevance_does_not_move(notes):
    with make_client(notes.parent / "db") as c:  # keyword hits are kept below a threshold
        hits = _search(c, k=100, hybrid=False)
        rel = [h["relevance"] for h in hits]
        assert len(set(rel)) > 8  # scores to cut between
        cut = (rel[9] + rel[10]) / 2  # keeps the first 10
        kept = [h["path"] for h in hits if h["relevance"] >= cut]
        assert len(kept) == 10
        gone = [hits[0]["path"], hits[4]["path"], hits[12]["path"]]
        _spoil(notes, gone)
        readable = {h["path"]: h["relevance"] for h in hits if h["path"] not in gone}
        shown = [p for p in kept if p not in gone]
        walked: list[dict] = []
        for offset in range(0, N, 3):
            page = _search(c, k=3, offset=offset, min_score=cut, hybrid=False)
            assert len(page) == min(3, max(0, len(shown) - offset))
            walked += page
        # the eight readable ones of the ten above the threshold, none below it
        assert [h["path"] for h in walked] == shown
        assert {h["path"]: h["relevance"] for h in walked} == {p: readable[p] for p in shown}
        by_name = _search(c, k=100, min_score=cut, sort="name", hybrid=False)
        assert [h["path"] for h in by_name] == sorted(shown)
        # the auto cutoff: pages of two walk the one list it keeps, of readable files only
        auto = [h["path"] for h in _search(c, k=100, min_score="auto", hybrid=False)]
        assert auto and not set(auto) & set(gone)
        assert [h["path"] for o in range(0, N, 2)
                for h in _search(c, k=2, offset=o, min_score="auto", hybrid=False)] == auto


def test_hidden_hits_are_looked_at_up_to_a_cap(notes, monkeypatch):
    """Bounded work: after HIDDEN_CAP unreadable hits the search answers with what it has
    rather than check every file of the index. (Vector hits only, not grouped: the first
    round fetches exactly k candidates.)"""
    with make_client(notes.parent / "db") as c:
        ranked = [h["path"] for h in _search(c, k=100, hybrid=False, group=False)]
        _spoil(notes, ranked[:3])
        assert len(_search(c, k=5, hybrid=False, group=False)) == 5
        monkeypatch.setattr(search.ranking, "HIDDEN_CAP", 3)
        assert [h["path"] for h in _search(c, k=5, hybrid=False, group=False)] == ranked[3:5]
