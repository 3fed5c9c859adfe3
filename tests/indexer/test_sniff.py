import pytest

from indexer.sniff import classify, modality_of_extension, sniff


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"GIF89a\x10\x00\x10\x00\x80\x00", "GIF"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00", "BMP"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"OggS\x00\x02\x00\x00", "Ogg"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x21", "MP3"),
        (b"\xff\xfb\x90\x64\x00", "MP3"),
        (b"hello, world\n", "text"),
        ("caf\u00e9 cr\u00e8me".encode(), "text"),
        ("\u00e9t\u00e9".encode()[:-1], "text"),  # a character cut by the end of the head
        (b"\xff\xfeh\x00i\x00", "text"),  # UTF-16 with BOM
        (b"caf\xe9 cr\xe8me au lait", "binary"),  # Latin-1, not UTF-8
        (b"\x00\x01\x02\x03", "binary"),
        (b"", "empty"),
    ],
)
def test_sniff_names_the_format_from_magic_bytes(head, kind):
    assert sniff(head) == kind


@pytest.mark.parametrize(
    "head",
    [b"BMW cars are fast", b"GIF89a is a format", b"ID3 tags explained", b"OggS? no"],
)
def test_text_that_starts_like_a_magic_number_stays_text(head):
    assert sniff(head) == "text"
    assert classify("/x/notes.txt", head).modality == "text"


def test_extensions_map_to_modalities_case_insensitively():
    assert modality_of_extension("/a/B.JPEG") == "image"
    assert modality_of_extension("/a/b.Md") == "text"
    assert modality_of_extension("/a/b.flac") == "audio"
    assert modality_of_extension("/a/b.PDF") == "text"  # documents are indexed as text
    assert modality_of_extension("/a/b.xlsx") is None
    assert modality_of_extension("/a/README") is None


def test_content_wins_where_it_is_known_media_else_the_file_is_skipped_with_a_reason():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    assert classify("/x/a.txt", png).modality == "image"  # a PNG named .txt is an image
    assert classify("/x/a.mp3", png).modality == "image"
    assert classify("/x/a.jpg", b"RIFF\x24\x00\x00\x00WAVEfmt ").modality == "audio"
    v = classify("/x/a.jpg", b"just some words")
    assert v.modality is None and v.reason == "wrong extension: content is text, not image"
    v = classify("/x/a.png", b"\x13\x37\x00\xfe\x01")
    assert v.reason == "wrong extension: content is data of no known format, not image"
    assert classify("/x/a.txt", b"caf\xe9 \xe8").reason == "not UTF-8 text"
    assert classify("/x/a.txt", b"").reason == "empty file"


def test_documents_are_recognised_by_content_and_need_their_own_extension():
    assert classify("/x/a.pdf", b"%PDF-1.7\n%").modality == "text"
    assert classify("/x/a.txt", b"%PDF-1.7\n%").modality == "text"  # content wins: read as PDF
    assert classify("/x/a.docx", b"PK\x03\x04\x14\x00").kind == "DOCX"
    assert classify("/x/a.html", b"<!doctype html><html>").modality == "text"
    assert classify("/x/a.pdf", b"just words").reason == (
        "wrong extension: content is text, not a .pdf document"
    )
    assert classify("/x/a.txt", b"PK\x03\x04\x14\x00").reason == "not UTF-8 text"
    # a text that happens to hold "free" or "ftyp" at bytes 4..8 is not a video
    assert sniff(b"the free world") == "text" and sniff(b"\0\0\0\x20ftypisom") == "MP4"
