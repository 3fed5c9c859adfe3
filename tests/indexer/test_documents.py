"""PDF, HTML and DOCX documents: indexed as text passages (a PDF's with their page), searched
by keyword and by meaning, incremental and deduplicated; bad documents skipped with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.engine import Engine
from search.index import Index
from search.query import Query
from tests.indexer.corpus import CountingEncoder, text
from tests.indexer.documents import (
    docx,
    docx_bomb,
    encrypted_pdf,
    html,
    pdf,
    scanned_pdf,
)

FILLER = "the committee met on tuesday and reviewed several unrelated budget items "


def _docs(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "pdf": pdf(
            root / "report.pdf",
            [
                FILLER * 3 + "introduction",
                FILLER * 2 + "the aquarium keeps seventeen penguins near the glacier exhibit",
                FILLER + "conclusion",
            ],
        ),
        "html": html(
            root / "page.html",
            "lighthouse keepers polish the brass lantern nightly",
            title="Lighthouses",
            menu="Home Subscribe Navmenuword",
        ),
        "docx": docx(
            root / "memo.docx",
            ["Quarterly memo", "the orchard harvest of quinces"],
            table=[["cell", "sorghum tally"]],
        ),
        "txt": text(root / "plain.txt", "a plain note about windmills"),
    }


def _search(db: Path, words: str, **kw: object) -> list:
    with Index.open(db) as index:
        return Engine(index, CountingEncoder()).search(Query.text(words, **kw)).hits


def test_documents_are_passages_found_by_keyword_and_meaning_with_their_page(
    run_index, settings, tmp_path
):
    docs = _docs(tmp_path / "docs")
    report = run_index(CountingEncoder(), tmp_path / "docs")
    assert report.skipped == []
    assert report.by_modality["text"].added == 4
    hit = _search(settings.db, "seventeen penguins glacier")[0]
    assert hit.path == str(docs["pdf"]) and hit.page == 2 and "penguins" in hit.snippet
    assert hit.to_json()["page"] == 2 and hit.modality == "text"
    for words, doc in (("brass lantern", "html"), ("quinces harvest", "docx"), ("sorghum", "docx")):
        assert _search(settings.db, words)[0].path == str(docs[doc]), words
    # meaning only (no keyword tier): the bag-of-words fake still finds the page by its words
    top = _search(settings.db, "penguins glacier aquarium", hybrid=False)[0]
    assert (top.path, top.page) == (str(docs["pdf"]), 2)
    # an HTML page's menus, scripts, styles and footer are not its text
    for chrome in ("navmenuword", "trackingscript", "footerword", "secretstyle"):
        assert all(
            h.path != str(docs["html"]) or chrome not in (h.snippet or "").lower()
            for h in _search(settings.db, chrome)
        ), chrome
    with Index.open(settings.db) as index:
        stored = " ".join(
            s.text or "" for s in index.catalog.segments(index.catalog.segment_ids()).values()
        )
    assert (
        "Lighthouses" in stored and "Navmenuword" not in stored and "trackingscript" not in stored
    )


def test_documents_are_incremental_and_deduplicated(run_index, settings, tmp_path):
    docs = _docs(tmp_path / "docs")
    run_index(CountingEncoder(), tmp_path / "docs")
    enc = CountingEncoder()
    shutil.copy(docs["pdf"], tmp_path / "docs" / "copy.pdf")
    report = run_index(enc, tmp_path / "docs")
    assert enc.embedded["text"] == 0  # the copy is linked, the rest unchanged
    assert (report.by_modality["text"].linked, report.by_modality["text"].unchanged) == (1, 4)
    hit = _search(settings.db, "seventeen penguins")[0]
    assert sorted(hit.paths) == sorted([str(docs["pdf"]), str(tmp_path / "docs" / "copy.pdf")])


def test_bad_documents_are_skipped_with_a_reason(run_index, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    good = pdf(root / "good.pdf", ["a fine page about comets"])
    (root / "truncated.pdf").write_bytes(good.read_bytes()[:300])
    encrypted_pdf(root / "locked.pdf", "secret plans")
    (root / "notes.pdf").write_text("plain text named pdf")
    (root / "broken.docx").write_bytes(b"PK\x03\x04" + b"\x00garbage" * 50)
    docx_bomb(root / "bomb.docx", unpacked_mb=120)
    (root / "legacy.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    scanned_pdf(root / "scan.pdf", ["SCANNED INVOICE"])
    (root / "empty.html").write_text("<html><script>only code</script></html>")
    report = run_index(CountingEncoder(), root, max_text_chars=5_000_000, ocr="off")
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons.pop("truncated.pdf").startswith("corrupt or truncated PDF")
    assert reasons.pop("locked.pdf") == "encrypted PDF (needs a password)"
    assert reasons.pop("notes.pdf") == "wrong extension: content is text, not a .pdf document"
    assert reasons.pop("broken.docx").startswith("corrupt or truncated DOCX")
    assert reasons.pop("bomb.docx").startswith(
        "decompression bomb refused: the package unpacks to 120 MB"
    )
    assert reasons.pop("legacy.docx") == "encrypted or legacy Word document (not a DOCX package)"
    assert reasons.pop("scan.pdf").startswith(
        "no text layer (a scanned PDF: index it with --ocr on)"
    )
    assert reasons.pop("empty.html") == "no words in the document"
    assert reasons == {}
    assert report.by_modality["text"].added == 1  # good.pdf


def test_an_html_page_of_too_many_nested_tags_is_skipped_before_it_is_parsed(run_index, tmp_path):
    """50 MB of nested <div>s took 200 s and 6.8 GB to parse; past the tag cap it is refused."""
    root = tmp_path / "html"
    root.mkdir()
    (root / "nested.html").write_text("<html><body>" + "<div>" * 600_000 + "deep</body></html>")
    html(root / "fine.html", "a long page about comets " + "<p>tail</p>" * 2_000)
    report = run_index(CountingEncoder(), root)
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("nested.html", "HTML over the cap of 500,000 tags")
    ]
    assert report.by_modality["text"].added == 1


@pytest.mark.slow
def test_a_scanned_pdf_is_read_by_ocr_when_asked(run_index, settings, tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    root = tmp_path / "scans"
    root.mkdir()
    scanned_pdf(root / "scan.pdf", ["INVOICE NUMBER 4711", "DELIVERY ADDRESS BERLIN"])
    report = run_index(CountingEncoder(), root, ocr="on")
    assert report.skipped == []
    hit = _search(settings.db, "delivery address berlin")[0]
    assert hit.page == 2 and hit.ocr and "BERLIN" in hit.snippet.upper()


def test_an_index_from_before_pages_gains_the_new_columns_and_keeps_working(
    run_index, settings, tmp_path
):
    import sqlite3

    from search.index import CATALOG

    text(tmp_path / "old" / "a.txt", "a note about otters")
    run_index(CountingEncoder(), tmp_path / "old")
    con = sqlite3.connect(settings.db / CATALOG)  # the segments table of schema v1 as shipped
    for column in ("page", "stream", "ocr"):
        con.execute(f"ALTER TABLE segments DROP COLUMN {column}")
    con.execute("DROP TABLE alembic_version")  # made before Alembic versioned the schema
    con.commit()
    con.close()
    pdf(tmp_path / "old" / "b.pdf", ["first", "the beaver page"])
    report = run_index(CountingEncoder(), tmp_path / "old")
    assert report.by_modality["text"].added == 1
    hits = _search(settings.db, "otters beaver", k=5)
    assert {(Path(h.path).name, h.page) for h in hits} == {("a.txt", None), ("b.pdf", 2)}
