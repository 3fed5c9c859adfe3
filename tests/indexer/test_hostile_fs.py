"""A hostile file system at indexing time: links out of the roots, links within them, and file
names that are not UTF-8 or are otherwise awkward. (Serving the same: tests/web/test_hostile_fs.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import unicodedata

import numpy as np
import pytest

import cli
from indexer import loaders, plan
from indexer.discover import LEAVES, OWN_FOLDER, Found, walk
from indexer.loaders import NOT_REGULAR, LoaderConfig, set_config
from search.access import recorded_roots
from search.catalog import Catalog
from search.errors import UnsupportedMedia
from search.index import Index
from search.paths import ESC, from_db, shown, to_db
from tests.indexer.corpus import CountingEncoder, image, text, wav

SECRET = "root:x:0:0:root:/root:/bin/bash secret"


@pytest.fixture
def outside(tmp_path):
    """A folder next to the indexed one, holding what must never be indexed by default."""
    out = tmp_path / "outside"
    text(out / "passwd.txt", SECRET)
    text(out / "etc" / "hosts.txt", "127.0.0.1 localhost secret")
    return out


def _indexed(db) -> set[str]:
    with Index.open(db) as index:
        return set(index.catalog.file_states(["/"]))


# -- links -------------------------------------------------------------------------------------
def test_a_file_link_out_of_the_root_is_skipped_and_reported(tmp_path, outside, run_index):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes about the sea")
    os.symlink(outside / "passwd.txt", notes / "x.txt")  # ln -s /etc/passwd notes/x.txt
    report = run_index(CountingEncoder(), notes)
    assert [(s.path, s.reason) for s in report.skipped] == [(str(notes / "x.txt"), LEAVES)]
    assert _indexed(tmp_path / "db") == {str(notes / "a.txt")}
    with Index.open(tmp_path / "db") as index:
        bodies = index.catalog.engine.connect().exec_driver_sql(
            "SELECT group_concat(body) FROM passages_fts").scalar()
    assert "root:x" not in bodies


def test_a_folder_link_out_of_the_root_is_not_walked(tmp_path, outside, run_index):
    photos = tmp_path / "photos"
    image(photos / "red.png", "red")
    os.symlink(outside / "etc", photos / "etc")  # ln -s /etc photos/etc
    os.symlink(outside, photos / "up")
    report = run_index(CountingEncoder(), photos)
    assert sorted((s.path, s.reason) for s in report.skipped) == [
        (str(photos / "etc"), LEAVES), (str(photos / "up"), LEAVES)]
    assert _indexed(tmp_path / "db") == {str(photos / "red.png")}


def test_links_within_the_roots_are_followed_without_duplicates_or_loops(tmp_path, run_index):
    root = tmp_path / "root"
    text(root / "a" / "deep.txt", "words in a deep folder")
    os.symlink(root / "a" / "deep.txt", root / "alias.txt")  # a file link within the root
    os.symlink(root / "a", root / "a" / "loop")  # a folder link back up: a loop
    os.symlink(root, root / "a" / "top")
    enc = CountingEncoder()
    report = run_index(enc, root)
    assert report.skipped == []
    assert _indexed(tmp_path / "db") == {str(root / "a" / "deep.txt"), str(root / "alias.txt")}
    assert enc.embedded["text"] == 1  # one content, embedded once, with two paths
    # a root that is itself a link (~/Pictures -> /mnt/photos): links into its real folder stay in
    os.symlink(root, tmp_path / "named")
    assert run_index(CountingEncoder(), tmp_path / "named").skipped == []


def test_follow_links_opts_in_and_the_index_records_roots_and_choice(tmp_path, outside, run_index):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes")
    os.symlink(outside / "passwd.txt", notes / "x.txt")
    os.symlink(outside / "etc", notes / "etc")
    report = run_index(CountingEncoder(), notes, follow_links=True)
    assert report.skipped == []
    assert _indexed(tmp_path / "db") == {
        str(notes / "a.txt"), str(notes / "x.txt"), str(notes / "etc" / "hosts.txt")}
    with Index.open(tmp_path / "db") as index:
        [root] = recorded_roots(index.catalog)
    assert (root.path, root.real, root.follow_links) == (str(notes), str(notes), True)
    # indexed again without the flag: the links leave, their files are removed, choice recorded
    report = run_index(CountingEncoder(), notes)
    assert report.totals().removed == 2 and len(report.skipped) == 2
    with Index.open(tmp_path / "db") as index:
        assert recorded_roots(index.catalog)[0].follow_links is False


def test_cli_follow_links_flag_and_report(tmp_path, outside, capsys, monkeypatch):
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes")
    os.symlink(outside / "passwd.txt", notes / "x.txt")
    db = tmp_path / "db"
    argv = ["index", str(notes), "--db", str(db), "--model", "fake", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"] == [{"path": str(notes / "x.txt"), "reason": LEAVES}]
    assert cli.main([*argv, "--follow-links"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"] == [] and out["index"]["items"] == 2


def test_the_index_folder_under_a_root_is_never_indexed(tmp_path, run_index):
    """`crossfind index ~/photos --db ~/photos/idx`: the server's thumbnail cache (JPEGs in
    the index folder) was indexed, and each run added the thumbnails of the last one's."""
    image(tmp_path / "photos" / "red.png", "red")
    run_index(CountingEncoder(), tmp_path)  # tmp_path holds the index folder, tmp_path / "db"
    image(tmp_path / "db" / "thumbnails" / "1.jpg", "red", size=(32, 24))  # as the server makes
    os.symlink(tmp_path / "db", tmp_path / "photos" / "idx")  # and a link to it
    report = run_index(CountingEncoder(), tmp_path, follow_links=True)
    assert sorted((s.path, s.reason) for s in report.skipped) == [
        (str(tmp_path / "db"), OWN_FOLDER), (str(tmp_path / "photos" / "idx"), OWN_FOLDER)]
    assert _indexed(tmp_path / "db") == {str(tmp_path / "photos" / "red.png")}


# -- swaps between the walk and the read ------------------------------------------------------
@pytest.fixture
def swap_after_walk(monkeypatch):
    """``swap_after_walk(fn)``: ``fn()`` runs once the walk has stat'ed every file and before any
    is read: an attacker who swaps a file or folder at that moment (the OS edge, timed)."""

    def arm(fn):
        real_walk = plan.walk

        def walk_then_swap(*args, **kwargs):
            yield from real_walk(*args, **kwargs)
            fn()

        monkeypatch.setattr(plan, "walk", walk_then_swap)

    return arm


@pytest.fixture
def no_hang():
    """Fail (not hang) when a read blocks or never ends: a FIFO, /dev/zero."""

    def alarm(*_):
        raise TimeoutError("indexing hung on a file that is not a regular file")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _bodies(db) -> str:
    with Index.open(db) as index:
        return index.catalog.engine.connect().exec_driver_sql(
            "SELECT coalesce(group_concat(body), '') FROM passages_fts").scalar()


def test_a_file_swapped_for_an_outside_link_after_the_walk_is_not_read(
        tmp_path, outside, run_index, swap_after_walk):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes about the sea")
    x = text(notes / "x.txt", "harmless words")

    def swap():
        x.unlink()
        os.symlink(outside / "passwd.txt", x)

    swap_after_walk(swap)
    report = run_index(CountingEncoder(), notes, workers=0)
    assert [(s.path, s.reason) for s in report.skipped] == [(str(x), LEAVES)]
    assert "root:x" not in _bodies(tmp_path / "db")


def test_a_folder_swapped_for_an_outside_link_after_the_walk_is_not_read(
        tmp_path, outside, run_index, swap_after_walk):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes about the sea")
    text(notes / "etc" / "hosts.txt", "a harmless file of the same name")

    def swap():  # mv notes/etc notes/.old && ln -s /etc notes/etc
        os.rename(notes / "etc", notes / ".old")
        os.symlink(outside / "etc", notes / "etc")

    swap_after_walk(swap)
    report = run_index(CountingEncoder(), notes)  # in a worker process too
    assert [(s.path, s.reason) for s in report.skipped] == [(str(notes / "etc" / "hosts.txt"), LEAVES)]
    assert "secret" not in _bodies(tmp_path / "db")


@pytest.mark.parametrize("follow_links", [False, True])
@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "/dev/urandom", "socket"])
def test_a_file_swapped_for_a_fifo_device_or_socket_is_skipped_not_read_forever(
        tmp_path, run_index, swap_after_walk, no_hang, what, follow_links):
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes about the sea")
    x = text(notes / "x.txt", "harmless words")

    def swap():
        x.unlink()
        if what == "fifo":
            os.mkfifo(x)  # opening it for reading would wait for a writer forever
        elif what == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(x))
            sock.close()
        else:
            os.symlink(what, x)

    swap_after_walk(swap)
    report = run_index(CountingEncoder(), notes, workers=0, follow_links=follow_links)
    [skip] = report.skipped
    assert (skip.path, skip.reason) == (str(x), NOT_REGULAR)  # refused before any read
    assert _indexed(tmp_path / "db") == {str(notes / "a.txt")}


def test_specials_inside_a_root_are_never_opened(tmp_path, run_index, no_hang):
    """Met by the walk itself: a FIFO, a socket, links to devices and to /proc (followed)."""
    notes = tmp_path / "notes"
    text(notes / "a.txt", "plain notes")
    os.mkfifo(notes / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(notes / "sock.txt"))
    sock.close()
    os.symlink("/dev/zero", notes / "zero.txt")
    os.symlink("/proc/self/environ", notes / "environ.txt")
    os.symlink("/proc/self/fd/0", notes / "stdin.txt")
    report = run_index(CountingEncoder(), notes, workers=0, follow_links=True)
    assert _indexed(tmp_path / "db") == {str(notes / "a.txt")}
    assert {s.path for s in report.skipped} <= {str(notes / "environ.txt")}  # an empty file


def test_loaders_refuse_what_leaves_the_roots_and_specials(tmp_path, outside, no_hang):
    """Swapped between the probe (hash) and the decode: every loader checks the open file."""
    root = tmp_path / "root"
    root.mkdir()
    set_config(LoaderConfig(lambda im: np.zeros((3, 8, 8), np.float32),
                            real_roots=(str(root),)))
    wav(outside / "tone.wav")
    image(outside / "red.png")
    for name, target, modality in [("t.txt", outside / "passwd.txt", "text"),
                                   ("i.png", outside / "red.png", "image"),
                                   ("s.wav", outside / "tone.wav", "audio")]:
        os.symlink(target, root / name)
        assert loaders.load(str(root / name), modality) == loaders.Skip(str(root / name), LEAVES)
        assert loaders.probe(str(root / name)) == loaders.Skip(str(root / name), LEAVES)
    os.mkfifo(root / "p.wav")
    for modality in ("text", "image", "audio"):
        assert loaders.load(str(root / "p.wav"), modality).reason == NOT_REGULAR
    # read through its descriptor, a bad file's reason still names the file, not /proc/self/fd/N
    (root / "bad.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk" * 40)
    reason = loaders.load(str(root / "bad.wav"), "audio").reason
    assert reason.startswith("undecodable audio: bad.wav: corrupt or undecodable audio (")
    assert str(root / "bad.wav") in reason and "/proc/" not in reason
    # a long recording is decoded later by the writer: it checks again
    streamed = loaders.StreamedAudio(str(root / "s.wav"), 5.0, 2.5, 10, (str(root),))
    with pytest.raises(UnsupportedMedia, match=LEAVES):
        list(streamed.windows())


# -- names -------------------------------------------------------------------------------------
def _awkward(root) -> dict[str, bytes]:
    """Files with awkward names under ``root``: label -> the path as bytes (what Linux holds)."""
    rootb = os.fsencode(root)
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    names = {
        "bytes": b"bad\xff name.txt",
        "latin1": b"r\xe9sum\xe9.txt",
        "newline": b"two\nlines.txt",
        "tab": b"a\ttab.txt",
        "emoji": "fish 🐟.txt".encode(),
        "nfc": f"{nfc}.txt".encode(),
        "nfd": f"{nfd}.txt".encode(),
        "long": b"n" * 251 + b".txt",  # 255 bytes, the longest name Linux allows
        "escape": "odd \uffff mark.txt".encode(),  # the catalog's own escape character
    }
    out = {}
    for i, (label, name) in enumerate(names.items()):
        path = os.path.join(rootb, name)
        with open(path, "w") as fh:
            fh.write(f"note number {i} about {label} awkward")
        out[label] = path
    # a path near PATH_MAX (4096 bytes): 15 folders of 250 bytes, then a file
    deep = rootb
    for d in range(15):
        deep = os.path.join(deep, bytes([97 + d]) * 250)
    os.makedirs(deep)
    out["deep"] = os.path.join(deep, b"deep.txt")
    with open(out["deep"], "w") as fh:
        fh.write("a note at the bottom of deep folders")
    assert len(out["deep"]) > 3800
    return out


def test_awkward_names_are_indexed_updated_and_removed_losslessly(tmp_path, run_index):
    root = tmp_path / "m"
    root.mkdir()
    text(root / "good.txt", "a good plain name")
    files = _awkward(root)
    enc = CountingEncoder()
    report = run_index(enc, root)
    assert report.skipped == [] and report.totals().added == len(files) + 1
    on_disk = {os.fsdecode(p) for p in files.values()} | {str(root / "good.txt")}
    assert _indexed(tmp_path / "db") == on_disk  # the same bytes come back, NFC != NFD
    assert json.dumps(report.to_json(), ensure_ascii=False).encode()  # printable as UTF-8

    # a second run reads nothing again and embeds nothing
    before = dict(enc.embedded)
    report = run_index(enc, root)
    assert enc.embedded == before and report.totals().unchanged == len(files) + 1

    # changed, renamed and deleted like any other file
    with open(files["bytes"], "a") as fh:
        fh.write(" and more words")
    renamed = files["newline"][:-4] + b"\xfe.txt"
    os.rename(files["newline"], renamed)
    os.unlink(files["nfd"])
    os.unlink(files["deep"])
    report = run_index(enc, root)
    t = report.totals()
    assert (t.updated, t.linked, t.removed, t.added) == (1, 1, 3, 0)
    assert enc.embedded["text"] == before["text"] + 1
    expected = (on_disk - {os.fsdecode(files[k]) for k in ("newline", "nfd", "deep")}) | {
        os.fsdecode(renamed)}
    assert _indexed(tmp_path / "db") == expected


def test_cli_indexes_a_name_that_is_not_utf8_and_shows_it_escaped(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    m = tmp_path / "m"
    m.mkdir()
    with open(os.path.join(os.fsencode(m), b"bad\xff.txt"), "w") as fh:
        fh.write("x marks the spot")
    text(m / "good.txt", "a good file")
    db = str(tmp_path / "db")
    assert cli.main(["index", str(m), "--db", db, "--model", "fake", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["index"]["items"] == 2 and out["skipped"] == []
    assert cli.main(["search", "spot", "--db", db, "--json", "--k", "5"]) == 0
    paths = [hit["path"] for hit in json.loads(capsys.readouterr().out)["results"]]
    assert f"{m}/bad\\xff.txt" in paths
    assert cli.main(["search", "spot", "--db", db, "--k", "5"]) == 0
    assert f"{m}/bad\\xff.txt" in capsys.readouterr().out


def test_the_walk_yields_bytes_names_as_the_os_gives_them(tmp_path):
    with open(os.path.join(os.fsencode(tmp_path), b"x\xff.txt"), "w") as fh:
        fh.write("x")
    [found] = list(walk([str(tmp_path)]))
    assert isinstance(found, Found) and os.fsencode(found.path).endswith(b"x\xff.txt")


# -- the stored form of paths -----------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/plain/path.txt", "/a/bad\udcff.txt", "/a/\uffff/x", "/a/\uffff\udc80\uffffdc80",
    "/a/\udcffdcff", "/emoji/🐟\n\t.txt",
])
def test_the_stored_form_is_reversible_prefix_preserving_and_utf8(path):
    stored = to_db(path)
    assert from_db(stored) == path
    stored.encode("utf-8")  # SQLite can hold it
    for cut in range(len(path)):
        assert stored.startswith(to_db(path[:cut]))
    assert shown(path).encode("utf-8") and "\n" not in shown(path)


def test_shown_escapes_bytes_and_control_characters():
    assert shown("/m/bad\udcff.txt") == "/m/bad\\xff.txt"
    assert shown("two\nlines\tx\x1b") == "two\\nlines\\tx\\x1b"
    assert shown("café 🐟") == "café 🐟"
    assert shown("invoice\u202etxt.exe") == "invoice\\u202etxt.exe"  # shows as "invoiceexe.txt"


# names crafted to show as another: the escape text itself, the bytes it stands for, U+FFFF
# and the catalog's stored form of a surrogate, bidi overrides
LOOKALIKES = [
    "bad\udcff.txt", "bad\\xff.txt", "bad\\\\xff.txt", "bad\\\udcff.txt", "bad\\x.txt",
    "two\nlines.txt", "two\\nlines.txt", "\uffffdcff.txt", "\udcff.txt", "\uffff.txt",
    "\u202eexe.txt", "exe.txt", "\u202dexe.txt", "a\u2028b.txt", "a\\u2028b.txt", "ansi\x1b[2J.txt",
]


def test_shown_never_shows_two_names_alike():
    """It was ambiguous: a file named with the four characters \\xff showed as bad\\xff.txt,
    exactly like the file whose name holds the byte 0xff."""
    shows = [shown(name) for name in LOOKALIKES]
    assert len(set(shows)) == len(LOOKALIKES), [s for s in shows if shows.count(s) > 1]
    for s in shows:
        assert s.isprintable() and s.encode("utf-8")


def test_an_old_catalog_is_migrated_on_open(tmp_path):
    """A catalog from before the escaping holds paths as they are; one holding U+FFFF (legal
    in a name) must keep meaning that path once opened."""
    cat = Catalog(tmp_path / "catalog.db")
    cat.add_content("0" * 64, "text", 1, [], [(f"/m/odd{ESC}.txt", 1, 1), ("/m/a.txt", 1, 1)])
    cat.close()
    con = sqlite3.connect(tmp_path / "catalog.db")
    with con:  # as an index made before: raw path, no marker
        con.execute("UPDATE files SET path = ? WHERE path = ?", (f"/m/odd{ESC}.txt",
                                                                  to_db(f"/m/odd{ESC}.txt")))
        con.execute("DELETE FROM meta WHERE key = 'path_encoding'")
    con.close()
    cat = Catalog(tmp_path / "catalog.db")
    assert set(cat.file_states(["/m"])) == {f"/m/odd{ESC}.txt", "/m/a.txt"}
    cat.close()
    cat = Catalog(tmp_path / "catalog.db")  # migrated once only
    assert set(cat.file_states(["/m"])) == {f"/m/odd{ESC}.txt", "/m/a.txt"}
    cat.close()
