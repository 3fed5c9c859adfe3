"""The server under concurrent clients while the index is written: no failed searches, no
dropped connections, and what the writer adds becomes searchable. Real uvicorn, real SQLite and
FAISS; the fake encoder (the edge). Correctness only: timings belong in bench/api.py."""

from __future__ import annotations

import socket
import threading

import httpx
import numpy as np

from search.catalog import SegmentIn
from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.browser import live_server
from tests.web.conftest import _add, build_corpus
from web.app import create_app


def _request(host: str, port: int, body: bytes) -> bytes:
    return (
        f"POST /api/search HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length; (0, b"") if the server
    closed the connection instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return 0, b""
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


class _Failing(FakeEncoder):
    """Raises an unexpected error (a bug, as far as the server knows) for the text "boom"."""

    def encode_text(self, texts):
        if "boom" in texts:
            raise RuntimeError("boom")
        return super().encode_text(texts)


def test_an_unexpected_error_answers_500_and_keeps_the_connection(tmp_path):
    corpus = build_corpus(tmp_path)
    app = create_app(Settings(db=corpus.db), engine=Engine(Index.open(corpus.db), _Failing()))
    with live_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(_request(host, int(port), b'{"parts": [{"text": "boom"}]}'))
            status, body = _read_response(sock)
            assert status == 500 and b"internal error: RuntimeError" in body
            # the same keep-alive connection answers the next request
            sock.sendall(_request(host, int(port), b'{"parts": [{"text": "red"}]}'))
            status, body = _read_response(sock)
            assert status == 200 and b"red.png" in body


def test_searches_while_an_index_is_written_never_fail(tmp_path):
    corpus = build_corpus(tmp_path)
    enc = FakeEncoder()
    app = create_app(Settings(db=corpus.db), engine=Engine(Index.open(corpus.db), enc))
    rounds, per_round = 25, 4
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def write() -> None:
        """Rows commit first, vectors reach the store file at each checkpoint (the indexer's
        order): readers meet catalog rows whose vectors they have not loaded yet."""
        with Index.open_for_write(corpus.db, enc.id, enc.dim) as index:
            for r in range(rounds):
                for i in range(per_round):
                    path = corpus.files / f"new{r}-{i}.txt"
                    text = f"zebra{r}x{i} crossing the savanna"
                    path.write_text(text)
                    seg = SegmentIn(text=text, char_start=0, char_end=len(text))
                    _add(index, enc, path, "text" if i % 2 else "image", [seg], enc.encode_text([text]))
                index.checkpoint()
        done.set()

    def search(base: str, seed: int) -> None:
        nonlocal answered
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, timeout=30) as client:
            while not done.is_set():
                text = ("red", "ocean", "forest", "zebra crossing")[rng.integers(4)]
                try:
                    r = client.post("/api/search", json={"parts": [{"text": text}], "k": 5})
                except httpx.TransportError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200 or not r.json()["results"]:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                answered += 1

    with live_server(app) as base:
        clients = [threading.Thread(target=search, args=(base, s)) for s in range(6)]
        for t in clients:
            t.start()
        write()
        for t in clients:
            t.join(60)
        last = httpx.post(f"{base}/api/search", json={"parts": [{"text": f"zebra{rounds - 1}x1"}]})
    assert failures == []
    assert answered >= 6
    assert last.json()["results"][0]["path"].endswith(f"new{rounds - 1}-1.txt")
