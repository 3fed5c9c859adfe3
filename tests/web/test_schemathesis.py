"""Property-based API tests generated from /openapi.json (schemathesis, in-process over ASGI):
no input the schema allows, nor malformed variants of it, may cause a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.conftest import API_KEY, build_corpus
from web.app import create_app

schemathesis = pytest.importorskip("schemathesis")

# the schema is loaded at import time (collection), so the app is built here
_CORPUS = build_corpus(Path(tempfile.mkdtemp(prefix="crossfind-st-")))
_APP = create_app(
    Settings(db=_CORPUS.db, api_key=API_KEY, max_upload_mb=1.0),
    engine=Engine(Index.open(_CORPUS.db), FakeEncoder()),
    index_fn=lambda roots, index, encoder, settings: {"roots": [str(r) for r in roots]},
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)
# Two checks cannot hold by design; every other check runs. The query model has rules JSON
# Schema cannot say (exactly one kind per part, decodable media), so not every schema-valid body
# is accepted; and it coerces types as pydantic's lax mode does ("k": "10", "group": 0), so not
# every schema-violating body is refused.
from schemathesis.specs.openapi.checks import (  # noqa: E402
    negative_data_rejection,
    positive_data_acceptance,
)

_EXCLUDED = [positive_data_acceptance, negative_data_rejection]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_answers_with_a_server_error(case) -> None:
    # writes would delete the corpus under the other examples: send a wrong key for them
    case.headers = {**(case.headers or {}), "X-API-Key": "not-the-key"}
    response = case.call_and_validate(excluded_checks=_EXCLUDED)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    # a HEAD answer has no body (HTTP), its error status included
    if case.path.startswith("/api/") and response.status_code >= 400 and case.method != "HEAD":
        body = response.json()
        assert body["status"] == response.status_code and body["message"]
