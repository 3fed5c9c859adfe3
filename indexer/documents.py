"""Documents: PDF (text per page), HTML (the main text) and DOCX, read into passages.

A document is indexed as text: its passages are embedded and searched exactly as a ``.txt``
file's, and a PDF passage keeps its 1-based page. Every failure is a ``Skip`` with a reason:
encrypted, corrupt or truncated files, and archives that would unpack past the caps.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from collections.abc import Callable

import numpy as np

from search.text import split_passages

HTML_EXTS = (".html", ".htm")
# elements that are never a page's main text
_CHROME = (
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "svg", "iframe", "button", "select", "menu", "dialog",
)
_BLANK_LINES = re.compile(r"\n\s*\n+")
# a DOCX may unpack to at most this many bytes per character of the text cap (XML is verbose)
_ZIP_BYTES_PER_CHAR = 20
# and its document hold at most this many XML elements per character of the cap (a formatted
# page has ~0.1): python-docx keeps every one in its tree
_DOCX_ELEMENTS_PER_CHAR = 0.5
# an HTML page may hold at most this many tags: the parsed tree costs ~650 bytes a tag, so 50 MB
# of nested <div>s took 6.8 GB and 200 s; a long real page has ~100k
_HTML_MAX_TAGS = 500_000
# bytes outside tags, scripts, styles and comments per character of the text cap: a page with
# more is surely over it (an entity as "&nbsp;" is 6 bytes for 1 character) and is refused
# before parsing, which holds ~5 bytes a byte (150 MB of <p>s took 780 MB and 7 s to refuse)
_HTML_BYTES_PER_CHAR = 6
_RAW_TEXT_ENDS = {b"<script": re.compile(rb"</script", re.I), b"<style": re.compile(rb"</style", re.I)}


class DocumentError(Exception):
    """A document that cannot be indexed; the message is the reason recorded for it."""


def document_kind(path: str, head: bytes) -> str | None:
    """"PDF", "DOCX" or "HTML" for a document file, None for plain text."""
    ext = os.path.splitext(path)[1].lower()
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith(b"PK\x03\x04") and ext == ".docx":
        return "DOCX"
    if ext in HTML_EXTS:
        return "HTML"
    return None


def read_document(
    kind: str, data: bytes, max_chars: int, passage_words: int, passage_overlap: int,
    ocr_pages: Callable[[list[np.ndarray]], list[str]] | None = None,
    max_seconds: float | None = None,
) -> tuple[list[dict], str | None]:
    """A document's passages (segment fields; a PDF's carry their page) and a note when only
    part of it could be read.

    ``ocr_pages``: reads the text off scanned pages (their images) when given, called with one
    page at a time; a PDF page without a text layer is otherwise left out.
    ``max_seconds``: no PDF page but the first is begun after this long (counted from opening
    it); the pages read so far are indexed.

    Raises:
        DocumentError: encrypted, corrupt, over the caps, or without words (the reason).
    """
    if kind == "PDF":
        pages, note = _pdf_pages(data, max_chars, ocr_pages, max_seconds)
    elif kind == "DOCX":
        pages, note = [(None, _docx_text(data, max_chars), False)], None
    else:
        if data.count(b"<") > _HTML_MAX_TAGS:  # every tag opens with one: a cheap upper bound
            raise DocumentError(f"HTML over the cap of {_HTML_MAX_TAGS:,} tags")
        if _text_bytes(data) > _HTML_BYTES_PER_CHAR * max_chars:
            raise DocumentError(f"text over the cap of {max_chars:,} characters (before parsing)")
        pages, note = [(None, html_main_text(data), False)], None
    if sum(len(page[1]) for page in pages) > max_chars:
        raise DocumentError(f"text over the cap of {max_chars:,} characters")
    segments: list[dict] = []
    for page, text, read in pages:
        for p in split_passages(text, passage_words, passage_overlap):
            if p.text:
                segments.append({
                    "text": p.text, "char_start": p.char_start, "char_end": p.char_end,
                    "page": page, "ocr": read,
                })
    if not segments:
        if kind != "PDF":
            raise DocumentError("no words in the document")
        if ocr_pages is None:
            raise DocumentError("no text layer (a scanned PDF: index it with --ocr on) in the document")
        raise DocumentError("no text in the document: no text layer, and OCR read none off its pages")
    return segments, note


def _pdf_pages(
    data: bytes, max_chars: int, ocr_pages: Callable[[list[np.ndarray]], list[str]] | None,
    max_seconds: float | None = None,
) -> tuple[list[tuple[int | None, str, bool]], str | None]:
    """(page number, text, read by OCR) per page with text, and a note when some had none or
    were not read within ``max_seconds``."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    # pypdf's own limits bound one page, not a document: a 300 KB PDF of 2,000 costly pages
    # would take hours, so no page is begun past the time cap
    end = None if max_seconds is None else time.monotonic() + max_seconds
    unread = 0  # pages not read within it
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _decrypt_empty(reader):
            raise DocumentError("encrypted PDF (needs a password)")
        n_pages = len(reader.pages)
        pages: list[tuple[int | None, str, bool]] = []
        scanned: list[int] = []
        total = 0
        for number, page in enumerate(reader.pages, 1):
            # the first page always: a PDF that was slow to open still gives what it can
            if end is not None and number > 1 and time.monotonic() > end:
                unread = n_pages - number + 1
                break
            text = page.extract_text() or ""
            if text.strip():
                pages.append((number, text, False))
                total += len(text)
                if total > max_chars:
                    break  # the caller refuses it: no need to read the rest
            else:
                scanned.append(number)
        if scanned and ocr_pages is not None and total <= max_chars:
            # a page at a time: a scanned book's page images (~26 MB each at 300 dpi) are
            # never all held at once
            read = set()
            for i, n in enumerate(scanned):
                if end is not None and time.monotonic() > end:
                    unread += len(scanned) - i
                    scanned = scanned[:i]
                    break
                image = _page_image(reader.pages[n - 1])
                text = ocr_pages([image])[0] if image is not None else ""
                del image
                if text.strip():
                    pages.append((n, text, True))
                    read.add(n)
                    total += len(text)
                    if total > max_chars:
                        break
            pages.sort(key=lambda page: page[0] or 0)
            scanned = [n for n in scanned if n not in read]
    except DocumentError:
        raise
    except DependencyError as exc:  # AES without the cryptography package (a dependency)
        raise DocumentError(f"encrypted PDF that this install cannot open: {exc}") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError,
            RecursionError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DocumentError(f"corrupt or truncated PDF: {type(exc).__name__}: {exc}") from None
    notes = []
    if unread:
        cap = f"the time cap of {max_seconds:g} s (CROSSFIND_MAX_DOCUMENT_S)"
        if not pages:
            raise DocumentError(f"no text read from the PDF within {cap}")
        notes.append(f"{unread} of {n_pages} page(s) not read within {cap}")
    if scanned and pages:
        why = "OCR read no text off them" if ocr_pages is not None else "--ocr on reads them"
        notes.append(f"{len(scanned)} page(s) without a text layer left out ({why})")
    return pages, "; ".join(notes) or None


def _decrypt_empty(reader: object) -> bool:
    """Open a PDF locked only against editing (an empty user password)."""
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:  # e.g. AES without the cryptography package: not readable here
        return False


def _page_image(page: object) -> np.ndarray | None:
    """The largest image on a scanned page, as RGB pixels (a scan is one image per page); None
    when it has none that decodes (a filter pypdf or PIL cannot decode, an image over pypdf's
    decompression limit): that page alone is then left out."""
    best = None
    try:
        for image in getattr(page, "images", []):
            try:
                pil = image.image
            except Exception:  # this image does not decode: no text from it
                continue
            finally:
                _forget_decoded(image)
            if pil is not None and (best is None or pil.width * pil.height > best.width * best.height):
                best = pil
    except Exception:  # the page's image list itself is broken
        pass
    if best is None:
        return None
    try:
        return np.asarray(best.convert("RGB"))
    except Exception:
        return None


def _forget_decoded(image: object) -> None:
    """Drop pypdf's cache of an image's decoded stream (kept on the reader's object for the
    reader's life): 26 MB a page of a 300 dpi colour scan, so a scanned book would pile up."""
    ref = getattr(image, "indirect_reference", None)
    stream = ref.get_object() if ref is not None else None
    if getattr(stream, "decoded_self", None) is not None:
        stream.decoded_self = None  # type: ignore[union-attr]


def _text_bytes(data: bytes) -> int:
    """The bytes of an HTML page outside its tags, scripts, styles and comments (at most 6 a
    character of its text). One pass: every search resumes where the last one ended, so no
    byte is scanned twice (a regular expression with lazy spans was quadratic on unclosed
    <script>s); called after the tag cap, so the loop runs at most that many times."""
    text, i, n = 0, 0, len(data)
    while i < n:
        start = data.find(b"<", i)
        if start < 0:
            return text + n - i
        text += start - i
        if data.startswith(b"<!--", start):
            end, size = data.find(b"-->", start + 4), 3
        else:
            end, size = data.find(b">", start + 1), 1
            head = data[start : start + 7].lower()
            closer = next((c for tag, c in _RAW_TEXT_ENDS.items() if head.startswith(tag)), None)
            if closer is not None and end >= 0:
                found = closer.search(data, end)
                end = data.find(b">", found.end()) if found else -1
        if end < 0:
            return text  # unclosed: the rest is markup
        i = end + size
    return text


def html_main_text(data: bytes) -> str:
    """The readable text of an HTML page: its title and its main content, without menus,
    scripts, styles, forms, headers and footers. The page's own charset is honoured."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_CHROME):
        tag.decompose()
    for tag in soup.select('[role="navigation"], [role="banner"], [role="contentinfo"]'):
        tag.decompose()
    mains = soup.find_all(["main", "article"]) or [soup.body or soup]
    body = "\n\n".join(m.get_text("\n", strip=True) for m in mains)
    text = f"{title}\n\n{body}" if title and title not in body[: len(title) + 200] else body
    return _BLANK_LINES.sub("\n\n", text).strip()


def _docx_text(data: bytes, max_chars: int) -> str:
    """Paragraphs, then table cells, of a DOCX; refuses packages that unpack past the cap."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if "word/document.xml" not in archive.namelist():
                raise DocumentError("not a Word document (no word/document.xml in the package)")
            cap = _ZIP_BYTES_PER_CHAR * max_chars
            if unpacked > cap:
                raise DocumentError(
                    f"decompression bomb refused: the package unpacks to {unpacked / 2**20:.0f} MB,"
                    f" over {cap / 2**20:.0f} MB"
                )
            _check_docx_weight(archive, max_chars)
    except zipfile.BadZipFile as exc:
        raise DocumentError(f"corrupt or truncated DOCX: {exc}") from None
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several kinds for broken packages
        raise DocumentError(f"corrupt DOCX: {type(exc).__name__}: {exc}") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(dict.fromkeys(cell.text for cell in row.cells)))
    return "\n".join(line for line in lines if line.strip())


_W_T = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t"


def _check_docx_weight(archive: zipfile.ZipFile, max_chars: int) -> None:
    """Refuse a document whose text is over the cap, or whose XML holds more elements than
    ``_DOCX_ELEMENTS_PER_CHAR`` a character of the cap, before python-docx builds its tree
    (~155 bytes an element: a 300 KB DOCX of 2.7 million tiny paragraphs took 2.1 GB and 96 s).
    A streaming parse that keeps nothing (each element is dropped once read)."""
    from lxml import etree

    elements, chars = 0, 0
    max_elements = int(_DOCX_ELEMENTS_PER_CHAR * max_chars)
    try:
        with archive.open("word/document.xml") as fh:
            for _, element in etree.iterparse(fh, events=("end",), resolve_entities=False):
                elements += 1
                if element.tag == _W_T and element.text:
                    chars += len(element.text)
                element.clear(keep_tail=False)
                while element.getprevious() is not None:
                    del element.getparent()[0]
                if chars > max_chars:
                    raise DocumentError(f"text over the cap of {max_chars:,} characters (before parsing)")
                if elements > max_elements:
                    raise DocumentError(
                        f"DOCX refused before parsing: over {max_elements:,} XML elements"
                        f" ({_DOCX_ELEMENTS_PER_CHAR:g} a character of the text cap)"
                    )
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"corrupt DOCX: XMLSyntaxError: {exc}") from None
