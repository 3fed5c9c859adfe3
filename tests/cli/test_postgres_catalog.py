"""End to end with a PostgreSQL catalog: ``crossfind index --catalog postgresql://...`` gives
the same search results as the SQLite catalog (vector and keyword hits, filters), later
commands find the catalog from the index folder, and ``crossfind serve`` answers from it; also
with the vectors in Milvus Lite, and embedded on Ray: the three scale-out engines together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import cli
from tests.indexer.corpus import image, text

REPO = Path(__file__).resolve().parents[2]
NOTES = {
    "bread.md": "Mix flour, water, yeast and salt, knead the dough and bake the loaf.",
    "football.txt": "The striker scored twice and the home team won the football match.",
    "markets.txt": "Stock markets fell sharply as investors worried about interest rates.",
    "zebra_notes.txt": "A field guide entry: the okapi is a relative of the giraffe.",
    "garden.txt": "Plant tomatoes in spring, water them daily and pick them in August.",
}
QUERIES = [
    ("bread dough", []),
    ("okapi", []),  # a rare word: the keyword tier
    ("zebra notes", []),  # a file name
    ("red", ["--filter", "ext=png"]),
    ("team", ["--filter", "glob=*/notes/*.txt", "--k", "3"]),
    ("water", ["--no-hybrid", "--k", "4"]),
]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _hits(capsys, db: Path, query: str, extra: list[str]) -> list[tuple[str, float, bool]]:
    code, out, err = _run(capsys, "search", query, "--db", db, "--json", *extra)
    assert code == 0, err
    return [(Path(r["path"]).name, round(r["score"], 5), bool(r.get("keyword"))) for r in json.loads(out)["results"]]


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for name, body in NOTES.items():
        text(root / "notes" / name, body)
    for colour in ("red", "green", "blue"):
        image(root / "photos" / f"{colour}.png", colour)
    text(root / "photos" / "copy-of-bread.md", NOTES["bread.md"])  # one content, two paths
    return root


@pytest.mark.parametrize("engines", [
    "postgresql",
    pytest.param("postgresql+milvus+ray", marks=pytest.mark.slow),
])
def test_index_search_info_and_serve_over_a_postgres_catalog(corpus, tmp_path, capsys, monkeypatch,
                                                              postgres_url, engines):
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    sqlite_db, pg_db = tmp_path / "sqlite-index", tmp_path / "pg-index"
    scale_out = ["--store", f"milvus:{pg_db / 'vectors.db'}", "--executor", "ray", "--workers", "1"] \
        if "milvus" in engines else []
    code, out, err = _run(capsys, "index", corpus, "--db", sqlite_db, "--model", "fake", "--json")
    assert code == 0, err
    code, out, err = _run(capsys, "index", corpus, "--db", pg_db, "--model", "fake", "--json",
                          "--catalog", postgres_url, *scale_out)
    assert code == 0, err
    report = json.loads(out)
    assert report["index"]["items"] == 9

    for query, extra in QUERIES:
        expected = _hits(capsys, sqlite_db, query, extra)
        assert expected, query
        assert _hits(capsys, pg_db, query, extra) == expected, query
    assert _hits(capsys, pg_db, "okapi", [])[0][0] == "zebra_notes.txt"

    # incremental on the same catalog: a change is seen, nothing else re-embedded
    text(corpus / "notes" / "garden.txt", "Plant potatoes in April.")
    code, out, err = _run(capsys, "index", corpus, "--db", pg_db, "--json", "--catalog", postgres_url)
    assert code == 0, err
    assert json.loads(out)["by_modality"]["text"]["updated"] == 1
    code, out, _ = _run(capsys, "info", "--db", pg_db, "--json")  # the folder names the catalog
    info = json.loads(out)
    assert code == 0 and info["items"] == 9 and not (pg_db / "catalog.sqlite3").exists()
    assert info["catalog"].startswith("postgresql://postgres@/cf_")
    assert info["store"].startswith("milvus:") == ("milvus" in engines)
    code, _, err = _run(capsys, "info", "--db", sqlite_db, "--catalog", postgres_url)
    assert code == 2 and "keeps its catalog in SQLite" in err

    # the server: stateless over the same catalog (a second one could answer alike); the CLI's
    # answer first, as a Milvus Lite file is open in one process at a time
    expected = [h[0] for h in _hits(capsys, pg_db, "potatoes", ["--k", "3"])]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register"}
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--db", str(pg_db), "--port", str(port),
         "--catalog", postgres_url],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, server)
        body = json.dumps({"parts": [{"text": "potatoes"}], "k": 3}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/search", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            results = json.loads(response.read())["results"]
        assert Path(results[0]["path"]).name == "garden.txt"
        assert [Path(r["path"]).name for r in results] == expected
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"crossfind serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if json.loads(r.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("crossfind serve did not become ready in 90 s")
