"""Generated documents for tests: PDFs (reportlab; pypdf for encryption), HTML and DOCX,
and text rendered into images with a real TrueType font (DejaVu)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (installed by scripts/ensure-fonts.sh); the test skips without it."""
    for path in FONT_PATHS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    pytest.skip("DejaVu fonts missing: run scripts/ensure-fonts.sh (apt-get fonts-dejavu-core)")


def text_image(
    phrase: str, size: tuple[int, int] = (640, 200), background: np.ndarray | None = None,
    font_px: int = 40,
) -> Image.Image:
    """``phrase`` in black on white (or in white on a darkened ``background`` photo)."""
    if background is None:
        image = Image.new("RGB", size, "white")
        fill, box = "black", None
    else:
        image = Image.fromarray(background).convert("RGB").resize(size)
        fill, box = "white", (0, 0, 0)
    face = font(font_px)
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), phrase, font=face)
    if right - left + 60 > size[0]:  # widen to fit the phrase with a margin
        size = (right - left + 60, size[1])
        image = image.resize(size)
    draw = ImageDraw.Draw(image)
    x, y = (size[0] - (right - left)) // 2, (size[1] - (bottom - top)) // 2
    if box is not None:
        draw.rectangle((x - 10, y - 10, x + right - left + 10, y + bottom - top + 16), fill=box)
    draw.text((x - left, y - top), phrase, font=face, fill=fill)
    return image


def pdf(path: Path, pages: Sequence[str]) -> Path:
    """A PDF with a text layer: one page per string (wrapped lines)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4)
    for body in pages:
        y = 800
        words = body.split()
        for i in range(0, len(words), 12):
            c.drawString(50, y, " ".join(words[i : i + 12]))
            y -= 16
        c.showPage()
    c.save()
    return path


def scanned_pdf(path: Path, phrases: Sequence[str]) -> Path:
    """A PDF of page images only (no text layer), as a scanner makes."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for phrase in phrases:
        buf = io.BytesIO()
        text_image(phrase, (900, 300)).save(buf, "PNG")
        c.drawImage(ImageReader(io.BytesIO(buf.getvalue())), 40, 500, 500, 166)
        c.showPage()
    c.save()
    return path


def encrypted_pdf(path: Path, body: str, password: str = "secret") -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = pdf(path.with_suffix(".plain.pdf"), [body])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    plain.unlink()
    return path


def docx(path: Path, paragraphs: Sequence[str], table: Sequence[Sequence[str]] = ()) -> Path:
    import docx as python_docx

    document = python_docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                t.cell(r, c).text = cell
    document.save(str(path))
    return path


def docx_bomb(path: Path, unpacked_mb: int = 200) -> Path:
    """A DOCX-shaped package whose document.xml unpacks to ``unpacked_mb`` MB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as fh:
            block = b"0" * (1 << 20)
            for _ in range(unpacked_mb):
                fh.write(block)
    return path


def html(path: Path, main: str, title: str = "A page", menu: str = "Home About Contact") -> Path:
    path.write_text(
        f"<!doctype html><html><head><title>{title}</title>"
        "<style>body {{ color: red }} .secretstyle {{}}</style>"
        "<script>var trackingscript = 1;</script></head><body>"
        f"<nav>{menu}</nav><header>Site banner</header>"
        f"<main><h1>{title}</h1><p>{main}</p></main>"
        "<footer>Copyright footerword</footer></body></html>",
        encoding="utf-8",
    )
    return path


def raw_pdf(objects: Sequence[bytes]) -> bytes:
    """A PDF written by hand from the bodies of objects 1..n (object 1 the catalog), with a
    correct cross-reference table: for shapes that PDF libraries refuse to write."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def image_pages_pdf(path: Path, sides: Sequence[tuple[int, int]]) -> Path:
    """A scanned-looking PDF: page i is one grey ``sides[i]`` (width, height) image of its own
    (white, one black row per page so no two are alike), no text layer. Cheap to write
    at any size: the pixels are Flate-compressed row by row."""
    import zlib

    n = len(sides)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n),
        b"<< /Length 31 >>\nstream\nq 600 0 0 800 0 0 cm /Im0 Do Q\nendstream",
    ]
    for i, (w, h) in enumerate(sides):
        z = zlib.compressobj(1)
        white, black = b"\xff" * w, b"\x00" * w
        pixels = b"".join(z.compress(black if row == i else white) for row in range(h)) + z.flush()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 3 0 R"
            b" /Resources << /XObject << /Im0 %d 0 R >> >> >>" % (5 + 2 * i)
        )
        objects.append(
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
            b" /BitsPerComponent 8 /Length %d /Filter /FlateDecode >>\nstream\n" % (w, h, len(pixels))
            + pixels + b"\nendstream"
        )
    path.write_bytes(raw_pdf(objects))
    return path


def costly_pdf(path: Path, pages: int, empty_texts: int, words: str = "") -> Path:
    """A small PDF whose every page shares one content stream of ``empty_texts`` empty text
    objects (``BT () Tj ET``, after ``words`` when given): a few KB that pypdf takes ~16 us an
    object to extract, page after page."""
    import zlib

    body = (b"BT /F1 12 Tf 50 700 Td (%s) Tj ET\n" % words.encode()) if words else b""
    content = zlib.compress(body + b"BT () Tj ET\n" * empty_texts, 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R"
        b" /Resources << /Font << /F1 3 0 R >> >> >>"
    ] * pages
    path.write_bytes(raw_pdf(objects))
    return path


def cyclic_form_pdf(path: Path, words: str) -> Path:
    """A PDF whose page draws a form that draws itself: pypdf reads ``words`` and warns
    ("Detected cyclic form XObject reference")."""
    form = b"BT /F1 1 Tf (%s) Tj ET /X Do" % words.encode()
    resources = b"<< /XObject << /X 5 0 R >> /Font << /F1 6 0 R >> >>"
    path.write_bytes(raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R /Resources %s >>"
        % resources,
        b"<< /Length 5 >>\nstream\n/X Do\nendstream",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources %s /Length %d >>\n"
        b"stream\n%s\nendstream" % (resources, len(form), form),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]))
    return path
