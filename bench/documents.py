"""Document figures: ``index_pdf_pages_per_s`` (PDF pages indexed per wall second, end to end
with the bundled encoder: pypdf text extraction, passages, MiniLM, the index).

The PDFs are made with reportlab from AG News articles: 20 documents of 10 pages, each page
holding four articles (about 150 words, 1-2 passages).
"""

from __future__ import annotations

from pathlib import Path

from bench.context import BenchContext

PER_PAGE = 4


def _pdfs(folder: Path, articles: list[str], n_docs: int, pages: int) -> int:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for d in range(n_docs):
        c = canvas.Canvas(str(folder / f"doc_{d:02d}.pdf"), pagesize=A4)
        for _ in range(pages):
            y = 800
            for _ in range(PER_PAGE):
                words = articles[k % len(articles)].split()
                k += 1
                for i in range(0, len(words), 14):
                    c.drawString(40, y, " ".join(words[i : i + 14]))
                    y -= 14
                y -= 10
            c.showPage()
        c.save()
    return n_docs * pages


def run(ctx: BenchContext) -> dict[str, object]:
    if ctx.shared_data is None:
        return {"documents_skipped": "../shared/data missing"}
    from indexer.pipeline import index_paths
    from search.encoders import create_encoder
    from search.index import Index
    from search.settings import get_settings

    docs = sorted((ctx.shared_data / "agnews_test" / "docs").glob("*.txt"))
    articles = [p.read_text(encoding="utf-8") for p in docs[:400]]
    n_docs, pages = (4, 5) if ctx.quick else (20, 10)
    folder = ctx.scratch / "pdf_corpus"
    total_pages = _pdfs(folder, articles, n_docs, pages)
    encoder = create_encoder("bundled", get_settings().cache_dir)
    encoder.encode_text(["warm up"])
    settings = get_settings(db=ctx.scratch / "pdf_index", cache_dir=get_settings().cache_dir)
    with Index.open_for_write(settings.db, encoder.id, encoder.dim) as index:
        report = index_paths([folder], index, encoder, settings, progress=False)
    return {
        "index_pdf_pages_per_s": round(total_pages / report.seconds, 1),
        "index_pdf_passages": report.by_modality["text"].vectors,
        "index_pdf_model_busy_fraction": round(report.model_busy_fraction, 3),
    }
