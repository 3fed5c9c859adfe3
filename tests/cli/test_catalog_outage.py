"""The PostgreSQL catalog's server going away under crossfind: stopped mid-index (every backend
killed at once) and frozen (a server that accepts but never answers). Each is a one-line error
in bounded time, never a traceback or a wait without end, and nothing committed is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.index import Index
from tests.indexer.corpus import text

REPO = Path(__file__).resolve().parents[2]
N_FILES = 60


def _cli(*argv: str, delay_ms: int = 0) -> list[str]:
    model = f"fake:delay_ms={delay_ms}" if delay_ms else "fake"
    return [sys.executable, "-m", "cli", *argv, "--model", model]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register",
            "CROSSFIND_CHECKPOINT_EVERY_S": "0.2"}


def _corpus(root: Path) -> Path:
    for i in range(N_FILES):
        text(root / f"n{i:02d}.txt", f"document {i} about a river and a stone bridge {i}")
    return root


def _consistent(db: Path) -> int:
    with Index.open(db) as index:
        counts = index.catalog.counts()
        assert len(index.catalog.rows_without_vectors()) == 0
        assert len(index.catalog.vectors_without_rows()) == 0
        assert index.store.count() == counts["segments"]
        return int(counts["items"])


def test_a_server_stopped_mid_index_is_one_line_and_the_rerun_completes(own_postgres_server, tmp_path):
    files, db = _corpus(tmp_path / "files"), tmp_path / "db"
    server = own_postgres_server
    url = server.create_database()
    run = subprocess.Popen(
        _cli("index", str(files), "--db", str(db), "--catalog", url, "--batch-size", "2",
             "--workers", "1", delay_ms=60),
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (db / "index.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # some batches committed, most to come
    server.stop()
    _, err = run.communicate(timeout=60)
    server.start()
    assert run.returncode == 2, err  # was 1 with a traceback
    assert "Traceback" not in err and "the catalog cannot be reached" in err
    assert "run the command again" in err
    committed = _consistent(db)
    assert 0 < committed < N_FILES
    rerun = subprocess.run(_cli("index", str(files), "--db", str(db)), cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert _consistent(db) == N_FILES


def test_a_frozen_server_is_an_error_in_seconds_not_a_wait(own_postgres_server, tmp_path):
    """A server that accepts connections but never answers (a hung host, a stalled disk) held
    `crossfind search` and `info` forever; libpq's connect_timeout (10 s by default here)
    now ends the wait."""
    files, db = _corpus(tmp_path / "files"), tmp_path / "db"
    server = own_postgres_server
    url = server.create_database()
    subprocess.run(_cli("index", str(files), "--db", str(db), "--catalog", url), cwd=REPO, env=_env(),
                   check=True, capture_output=True, timeout=120)
    pids = server.pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-m", "cli", "info", "--db", str(db)], cwd=REPO,
                                  env=_env(), capture_output=True, text=True, timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail("crossfind info waited on a frozen catalog server for 40 s")
        took = time.monotonic() - start
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cannot open the catalog" in done.stderr and "timeout" in done.stderr
    assert took < 25
    assert _consistent(db) == N_FILES  # and once it answers again, all is there


def test_network_timeouts_are_defaults_a_url_may_override_and_are_not_recorded(tmp_path):
    from search.dialect import CatalogTarget, parse_catalog

    target = CatalogTarget(url=parse_catalog("postgresql://cf@db.internal:5432/cf?connect_timeout=60"))
    conninfo = target.libpq()
    assert "connect_timeout=60" in conninfo and "connect_timeout=10" not in conninfo
    assert "keepalives=1" in conninfo and "tcp_user_timeout=" in conninfo
    assert "tcp_user_timeout=" in str(target.sqlalchemy_url)
    assert target.public == "postgresql://cf@db.internal:5432/cf?connect_timeout=60"


def test_a_writer_that_lost_its_lock_in_a_server_restart_stops_writing(own_postgres_server, tmp_path):
    """The writer's advisory lock dies with its connection in a restart while the pool
    reconnects the rest: the writer went on writing without it, beside a second writer that
    took the lock meanwhile. Now its next write stops with one line."""
    from search.errors import ServiceUnavailable
    from tests.fakes import FakeEncoder
    from tests.search.test_index_damage import _item

    enc = FakeEncoder(dim=16)
    server = own_postgres_server
    url = server.create_database()
    with Index.open_for_write(tmp_path / "a", enc.id, enc.dim, catalog_url=url) as first:
        first.add_contents([_item(1)], enc.encode_text(["one"]))
        server.stop()
        server.start()
        with Index.open_for_write(tmp_path / "b", enc.id, enc.dim, catalog_url=url) as second:
            second.add_contents([_item(2)], enc.encode_text(["two"]))  # it holds the lock now
            with pytest.raises(ServiceUnavailable, match="lost the one-writer lock"):
                first.add_contents([_item(3)], enc.encode_text(["three"]))
    with Index.open(tmp_path / "b") as reader:  # (the test server's commits are not durable:
        # an immediate stop may take the first write with it)
        assert reader.catalog.file("/d/2.txt") is not None
        assert reader.catalog.file("/d/3.txt") is None  # the write without the lock never landed
