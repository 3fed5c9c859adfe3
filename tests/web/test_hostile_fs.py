"""Serving from a hostile file system: nothing outside the indexed folders leaves through the
API (media, thumbnail, item, snippets, page), and names that are not UTF-8 are served.
(Indexing the same: tests/indexer/test_hostile_fs.py.)"""

from __future__ import annotations

import hashlib
import io
import os
import shutil

import pytest

from indexer import index_paths
from search.catalog import SegmentIn
from search.index import Index
from search.paths import shown
from search.settings import get_settings
from tests.indexer.corpus import CountingEncoder, image, text
from tests.web.conftest import API_KEY, make_client

SECRET = "root:x:0:0:root:/root:/bin/bash"


def _index(db, *roots, **settings) -> None:
    s = get_settings(db=db, workers=0, **settings)
    enc = CountingEncoder()
    with Index.open_for_write(db, enc.id, enc.dim) as index:
        index_paths([str(r) for r in roots], index, enc, s, progress=False)


def _all_hits(c) -> list[dict]:
    r = c.post("/api/search", json={"parts": [{"text": "notes root secret"}], "k": 100})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _id_of(c, path) -> int:
    return next(h["id"] for h in _all_hits(c) if h["path"] == str(path))


def _same_stat(src, dst) -> None:
    st = os.stat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- the three attacks of issue 9 --------------------------------------------------------------
def test_a_file_link_to_a_secret_in_an_old_index_is_never_served(tmp_path):
    """An index made before links were checked holds notes/x.txt -> the secret (as the indexer
    did then: it has no recorded roots). Item, media, snippets and page must not show it."""
    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes about the sea")
    os.symlink(secret, notes / "x.txt")  # ln -s /etc/passwd notes/x.txt
    db = tmp_path / "db"
    enc = CountingEncoder()
    with Index.open_for_write(db, enc.id, enc.dim) as index:
        for name in ("a.txt", "x.txt"):
            body, st = (notes / name).read_text(), os.stat(notes / name)
            _, ids = index.catalog.add_content(
                hashlib.sha256(body.encode()).hexdigest(), "text", len(body),
                [SegmentIn(text=body, char_start=0, char_end=len(body))],
                [(str(notes / name), st.st_size, st.st_mtime_ns)])
            index.add_vectors(ids, enc.encode_text([body]))
        index.checkpoint()
        leaked = ids[0]
    with make_client(db) as c:
        assert c.get(f"/api/items/{leaked}").status_code == 404
        assert c.get(f"/api/items/{leaked}/media").status_code == 404
        hits = _all_hits(c)
        assert [h["path"] for h in hits] == [str(notes / "a.txt")]
        page = c.get("/", params={"q": "root"})
        assert page.status_code == 200 and "root:x" not in page.text
        r = c.post("/api/search", json={"parts": [{"item_id": leaked}]})
        assert "root:x" not in r.text


def test_a_folder_link_out_of_the_root_serves_nothing(tmp_path):
    outside = tmp_path / "etc"
    text(outside / "hosts.txt", "secret hosts file")
    photos = tmp_path / "photos"
    image(photos / "red.png", "red")
    os.symlink(outside, photos / "etc")  # ln -s /etc photos/etc
    _index(tmp_path / "db", photos)
    with make_client(tmp_path / "db") as c:
        assert [h["path"] for h in _all_hits(c)] == [str(photos / "red.png")]
        assert c.get("/api/stats").json()["items"] == 1


def test_a_folder_swapped_for_a_link_after_indexing_is_not_served(tmp_path):
    """photos/ is renamed and a link of the same name leads to a folder elsewhere holding
    files of the same names, sizes and times: media, thumbnail, item and results refuse."""
    photos = tmp_path / "photos"
    image(photos / "album" / "red.png", "red")
    text(photos / "album" / "notes.txt", "notes about the album")
    _index(tmp_path / "db", photos)
    with make_client(tmp_path / "db") as c:
        red, notes = (_id_of(c, photos / "album" / n) for n in ("red.png", "notes.txt"))
        assert c.get(f"/api/items/{red}/thumbnail").status_code == 200  # cached from now on
        evil = tmp_path / "evil"
        evil.mkdir()
        image(evil / "red.png", "blue", size=(16, 16))
        text(evil / "notes.txt", "SECRET")
        for name in ("red.png", "notes.txt"):  # padded to the indexed size (PNG ignores a tail)
            size = os.path.getsize(photos / "album" / name)
            with open(evil / name, "ab") as fh:
                fh.write(b" " * (size - os.path.getsize(evil / name)))
            _same_stat(photos / "album" / name, evil / name)
            assert os.path.getsize(evil / name) == size
        os.rename(photos / "album", tmp_path / "album.old")
        os.symlink(evil, photos / "album")
        for item in (red, notes):
            assert c.get(f"/api/items/{item}/media").status_code == 404
            assert c.get(f"/api/items/{item}").status_code == 404
        assert c.get(f"/api/items/{red}/thumbnail").status_code == 404
        assert _all_hits(c) == []
        # put back: served again
        os.unlink(photos / "album")
        os.rename(tmp_path / "album.old", photos / "album")
        assert c.get(f"/api/items/{red}/media").status_code == 200


# -- what stays served ------------------------------------------------------------------------
def test_links_within_the_root_and_a_linked_root_are_served(tmp_path):
    real = tmp_path / "mnt" / "photos"
    image(real / "red.png", "red")
    text(real / "notes" / "a.txt", "notes inside")
    os.symlink(real / "notes" / "a.txt", real / "alias.txt")
    os.symlink(real, tmp_path / "Pictures")  # ~/Pictures -> /mnt/photos, indexed by that name
    _index(tmp_path / "db", tmp_path / "Pictures")
    with make_client(tmp_path / "db") as c:
        hits = {h["path"]: h for h in _all_hits(c)}
        assert set(hits) == {str(tmp_path / "Pictures" / "red.png"),
                             str(tmp_path / "Pictures" / "alias.txt")}
        pics = tmp_path / "Pictures"
        assert sorted(hits[str(pics / "alias.txt")]["paths"]) == [
            str(pics / "alias.txt"), str(pics / "notes" / "a.txt")]
        for hit in hits.values():
            assert c.get(hit["media_url"]).status_code == 200
        # the linked root now points elsewhere: nothing of it is served
        other = tmp_path / "other"
        shutil.copytree(real, other, copy_function=shutil.copy2, symlinks=True)
        os.unlink(tmp_path / "Pictures")
        os.symlink(other, tmp_path / "Pictures")
        red = hits[str(tmp_path / "Pictures" / "red.png")]
        assert c.get(red["media_url"]).status_code == 404  # a copy, outside the recorded root


def test_follow_links_serves_what_the_user_chose_while_it_is_the_indexed_file(tmp_path):
    secret = tmp_path / "elsewhere" / "shared.txt"
    text(secret, "a note shared from elsewhere")
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes")
    os.symlink(secret, notes / "x.txt")
    _index(tmp_path / "db", notes, follow_links=True)
    with make_client(tmp_path / "db") as c:
        item = _id_of(c, notes / "x.txt")
        assert c.get(f"/api/items/{item}/media").text == "a note shared from elsewhere"
        secret.write_text("changed since it was indexed!")
        assert c.get(f"/api/items/{item}/media").status_code == 404


# -- names that are not UTF-8 ------------------------------------------------------------------
def test_awkward_names_are_served_shown_escaped_and_deleted(tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    names = {b"bad\xff.txt": "escaped", b"two\nlines.txt": "newline", "🐟.txt".encode(): "emoji"}
    for name, word in names.items():
        with open(os.path.join(os.fsencode(m), name), "w") as fh:
            fh.write(f"notes about {word}")
    text(m / "good.txt", "notes about good")
    _index(tmp_path / "db", m)
    with make_client(tmp_path / "db", api_key=API_KEY) as c:
        hits = {h["path"]: h for h in _all_hits(c)}
        assert set(hits) == {f"{m}/bad\\xff.txt", f"{m}/two\\nlines.txt", f"{m}/🐟.txt",
                             f"{m}/good.txt"}
        bad = hits[f"{m}/bad\\xff.txt"]
        item = c.get(bad["item_url"])
        assert item.status_code == 200 and item.json()["path"] == f"{m}/bad\\xff.txt"
        media = c.get(bad["media_url"])
        assert media.status_code == 200 and media.text == "notes about escaped"
        assert c.get(hits[f"{m}/two\\nlines.txt"]["media_url"]).text == "notes about newline"
        page = c.get("/", params={"q": "notes"})
        assert page.status_code == 200 and "bad\\xff.txt" in page.text
        r = c.delete(f"/api/items/{bad['id']}", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200 and r.json()["paths"] == [f"{m}/bad\\xff.txt"]
        assert f"{m}/bad\\xff.txt" not in {h["path"] for h in _all_hits(c)}


@pytest.mark.parametrize("change", ["touch", "delete"])
def test_results_keep_only_files_that_are_still_the_indexed_ones(tmp_path, change):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "notes one")
    text(notes / "b.txt", "notes one")  # same bytes: one content, two paths
    _index(tmp_path / "db", notes)
    with make_client(tmp_path / "db") as c:
        [hit] = _all_hits(c)
        assert sorted(hit["paths"]) == [str(notes / "a.txt"), str(notes / "b.txt")]
        if change == "touch":
            os.utime(notes / "a.txt", ns=(1, 1))
        else:
            os.unlink(notes / "a.txt")
        [hit] = _all_hits(c)
        assert hit["path"] == str(notes / "b.txt") and "paths" not in hit
        assert c.get(hit["item_url"]).json()["paths"] == [str(notes / "b.txt")]


def test_a_small_file_rewritten_in_place_with_the_same_size_and_time_is_not_served(tmp_path):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "notes: the public part")
    _index(tmp_path / "db", notes)
    with make_client(tmp_path / "db") as c:
        item = _id_of(c, notes / "a.txt")
        st = os.stat(notes / "a.txt")
        (notes / "a.txt").write_text("SECRET: the private on")  # same length
        os.utime(notes / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.path.getsize(notes / "a.txt") == st.st_size
        assert c.get(f"/api/items/{item}").status_code == 404
        r = c.get(f"/api/items/{item}/media")
        assert r.status_code == 404 and b"SECRET" not in r.content


# -- swaps between the check and the read -----------------------------------------------------
@pytest.fixture
def swap_at_send(monkeypatch):
    """``swap_at_send(fn)``: ``fn()`` runs once, after a route checked its file and as the
    response starts to send (or, for thumbnails, as the image is decoded): an attacker who swaps
    a file or folder at that moment (the OS edge, timed)."""
    from starlette.responses import FileResponse

    import web.thumbnails

    def arm(fn):
        done = []

        def once():
            if not done:
                done.append(fn())

        send, decode = FileResponse.__call__, web.thumbnails.open_image

        async def call(self, *args):
            once()
            return await send(self, *args)

        def open_image(*args, **kwargs):
            once()
            return decode(*args, **kwargs)

        monkeypatch.setattr(FileResponse, "__call__", call)
        monkeypatch.setattr(web.thumbnails, "open_image", open_image)

    return arm


def _evil_twin(tmp_path, album, names) -> object:
    """A folder elsewhere with files of the same names, sizes and times as ``album``'s, and a
    function that swaps ``album`` for a link to it (mv album album.old; ln -s evil album)."""
    evil = tmp_path / "evil"
    evil.mkdir()
    image(evil / "red.png", "blue", size=(16, 16))
    text(evil / "notes.txt", "SECRET")
    for name in names:  # padded to the indexed size (PNG ignores a tail)
        with open(evil / name, "ab") as fh:
            fh.write(b" " * (os.path.getsize(album / name) - os.path.getsize(evil / name)))
        _same_stat(album / name, evil / name)

    def swap():
        os.rename(album, tmp_path / "album.old")
        os.symlink(evil, album)

    return swap


@pytest.mark.parametrize("route", ["media", "thumbnail"])
def test_a_folder_swapped_between_the_check_and_the_read_is_not_what_is_sent(
        tmp_path, swap_at_send, route):
    from PIL import Image

    album = tmp_path / "photos" / "album"
    text(album / "notes.txt", "notes about the album, public")
    image(album / "red.png", "red")
    _index(tmp_path / "db", tmp_path / "photos")
    with make_client(tmp_path / "db") as c:
        name = "notes.txt" if route == "media" else "red.png"
        item = _id_of(c, album / name)
        swap_at_send(_evil_twin(tmp_path, album, [name]))
        r = c.get(f"/api/items/{item}/{route}")
        assert r.status_code == 200
        if route == "media":
            assert r.text == "notes about the album, public"
        else:
            rgb = Image.open(io.BytesIO(r.content)).convert("RGB").resize((1, 1)).getpixel((0, 0))
            assert rgb[0] > 150 and rgb[2] < 100  # red, not the swapped-in blue


@pytest.mark.parametrize("what", ["fifo", "/dev/zero"])
def test_a_file_swapped_for_a_fifo_or_device_at_send_time_never_hangs_or_500s(
        tmp_path, swap_at_send, what):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "notes, public")
    _index(tmp_path / "db", notes, follow_links=True)
    with make_client(tmp_path / "db") as c:
        item = _id_of(c, notes / "a.txt")

        def swap():
            os.rename(notes / "a.txt", tmp_path / "a.old")
            os.mkfifo(notes / "a.txt") if what == "fifo" else os.symlink(what, notes / "a.txt")

        swap_at_send(swap)
        r = c.get(f"/api/items/{item}/media")  # was: RuntimeError "is not a file" (500)
        assert r.status_code == 200 and r.text == "notes, public"
        assert c.get(f"/api/items/{item}/media").status_code == 404  # checked afresh: refused


def test_crafted_names_never_break_the_page_the_json_or_the_cli_table(tmp_path, capsys, monkeypatch):
    """Names that are markup, script, ANSI escapes, bidi overrides or the escape text itself:
    the page shows them as text (no element or script made of a name), the JSON and the CLI
    table show each name as itself, distinct from every other, on one line."""
    import cli
    from tests.indexer.test_hostile_fs import LOOKALIKES

    m = tmp_path / "m"
    m.mkdir()
    xss = ['<img src=x onerror=alert(1)>.txt', '"><script>alert(1)<\u2215script>.txt',
           "';alert(1);'.txt", "{{7*7}}.txt"]
    names = [*LOOKALIKES, *xss]
    for i, name in enumerate(names):
        with open(os.path.join(os.fsencode(m), os.fsencode(name)), "w") as fh:
            fh.write(f"notes number {i}")
    _index(tmp_path / "db", m)
    with make_client(tmp_path / "db") as c:
        hits = _all_hits(c)
        shown_paths = [h["path"] for h in hits]
        assert len(hits) == len(names) and len(set(shown_paths)) == len(names)
        for h in hits:  # each result serves its own file
            i = int(c.get(h["media_url"]).text.split()[-1])
            assert h["path"] == f"{m}/{shown(names[i])}"
        page = c.get("/", params={"q": "notes number", "k": 100}).text
        assert "<img src=x" not in page and "<script>alert" not in page
        assert "onerror=alert(1)&gt;" in page and "{{7*7}}" in page
        assert "\x1b" not in page and "\u202e" not in page
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    capsys.readouterr()
    assert cli.main(["search", "notes number", "--db", str(tmp_path / "db"), "--k", "100"]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\u202e" not in table
    rows = [line for line in table.splitlines() if str(m) in line]
    assert len(rows) == len(names)
    assert {row[row.index(str(m)):].split("  ")[0] for row in rows} == set(shown_paths)


def test_range_and_head_abuse_on_media_is_answered_within_the_file(tmp_path):
    notes = tmp_path / "notes"
    body = "notes " + "x" * 1000
    text(notes / "a.txt", body)
    image(notes / "red.png", "red")
    _index(tmp_path / "db", notes)
    with make_client(tmp_path / "db") as c:
        url = f"/api/items/{_id_of(c, notes / 'a.txt')}/media"
        n = len(body)
        cases = {  # Range -> (status, bytes sent)
            "bytes=0-99999999999999999999": (206, n),  # clamped to the file
            "bytes=-5": (206, 5),
            "bytes=-99999999999999999999999": (206, n),
            "bytes=-0": (416, 0),
            "bytes=5-1": (400, None),
            "bytes=99999-": (416, 0),
            "items=0-1": (400, None),
            "bytes=" + ",".join(["0-"] * 100): (206, n),  # overlapping ranges merged: no x100
            "bytes=" + ",".join(["0-"] * 101): (200, n),  # too many: the whole file, once
        }
        for header, (status, size) in cases.items():
            r = c.get(url, headers={"Range": header})
            assert r.status_code == status, header
            assert size is None or len(r.content) == size, header
        parts = c.get(url, headers={"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 200, 2))})
        assert parts.status_code == 206 and len(parts.content) < 200 * n // 10  # 100 parts at most
        for route in ("media", "thumbnail"):  # HEAD: headers only, as GET would send them
            item = _id_of(c, notes / ("a.txt" if route == "media" else "red.png"))
            head = c.head(f"/api/items/{item}/{route}")
            get = c.get(f"/api/items/{item}/{route}")
            assert head.status_code == 200 and head.content == b""  # was 405
            assert head.headers["content-length"] == get.headers["content-length"]
