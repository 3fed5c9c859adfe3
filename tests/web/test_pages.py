"""The search page rendered on the server: it works with JavaScript off."""

from __future__ import annotations

import re

from markupsafe import Markup

from tests.web.conftest import API_KEY, build_corpus, make_client, png_bytes
from web.highlight import highlight, query_terms


def _card_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<li class="card card-\w+" data-id="(\d+)"', html)]


def test_front_page_shows_the_form_and_what_is_indexed(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<form id="search-form" action="/" method="get"' in html
    assert 'name="q"' in html and html.count('name="modality"') == 3
    assert "9 files indexed" in html and "4 text" in html
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_plain_get_search_renders_results_without_javascript(client, corpus):
    html = client.get("/", params={"q": "green forest"}).text
    ids = _card_ids(html)
    assert ids and set(ids[:2]) == {corpus.ids["forest.txt"], corpus.ids["green.png"]}
    assert 'value="green forest"' in html
    assert "<mark>green</mark>" in html and "<mark>forest</mark>" in html
    assert f'src="/api/items/{corpus.ids["green.png"]}/thumbnail"' in html
    assert f'href="/?like={corpus.ids["forest.txt"]}"' in html  # more like this, as a link


def test_modality_chips_filter_and_stay_ticked(client):
    html = client.get("/?q=low&modality=audio").text
    assert re.findall(r"card card-(\w+)", html) == ["audio", "audio"]
    assert 'value="audio" checked' in html and 'value="image" checked' not in html
    # the audio player starts at the matching window (media fragment)
    assert re.search(
        r'<audio controls preload="metadata" src="/api/items/\d+/media#t=[\d.]+,[\d.]+"', html
    )


def test_more_like_this_and_paging_links(client, corpus):
    item = corpus.ids["red.png"]
    html = client.get(f"/?like={item}").text
    assert _card_ids(html)[0] == item and "More like" in html
    from web.routes import pages

    old = pages.PAGE_SIZE
    pages.PAGE_SIZE = 3
    try:
        first = client.get("/?q=apples").text
        assert 'href="/?q=apples&amp;page=2"' in first and "Previous" not in first
        second = client.get("/?q=apples&page=2").text
        assert 'href="/?q=apples&amp;page=1"' in second
        assert not set(_card_ids(first)) & set(_card_ids(second))
    finally:
        pages.PAGE_SIZE = old


def test_no_results_state(tmp_path):
    corpus = build_corpus(tmp_path)
    with make_client(corpus.db, api_key=API_KEY) as c:
        for name in ("low.wav", "high.wav"):
            c.delete(f"/api/items/{corpus.ids[name]}", headers={"X-API-Key": API_KEY})
        html = c.get("/?q=low&modality=audio").text
        assert "No results for “low” among audio" in html and not _card_ids(html)


def test_error_states(client):
    r = client.get("/?q=apples&modality=smell")
    assert (
        r.status_code == 422 and "unknown modality" in r.text and 'class="notice error"' in r.text
    )
    r = client.get("/?page=0&q=x")
    assert r.status_code == 422 and "page" in r.text


def test_partial_errors_are_fragments(client):
    r = client.post("/partials/results", data={"text": "apples", "item_id": "999999"})
    assert r.status_code == 404 and 'class="notice error"' in r.text
    assert "<html" not in r.text  # a fragment for the page script, not a whole page


def test_partial_results_take_uploaded_files(client, corpus):
    r = client.post(
        "/partials/results",
        data={"modality": ["image"], "page": "1"},
        files={"image": ("q.png", png_bytes((20, 30, 230)), "image/png")},
    )
    assert r.status_code == 200 and "<html" not in r.text
    assert _card_ids(r.text)[0] == corpus.ids["blue.jpg"]
    r = client.post("/partials/results", files={"image": ("q.png", b"junk", "image/png")})
    assert r.status_code == 415 and "not a decodable image" in r.text


def test_indexed_text_is_escaped_on_the_page(client):
    html = client.get("/?q=meeting notes").text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html


def test_highlight_marks_word_starts_and_escapes():
    terms = query_terms(["Dogs and <b>cats</b>"])
    assert terms == ["dogs", "cats"] or set(terms) == {"dogs", "cats"}
    out = highlight("Two dogs & three cats <i>here</i>", query_terms(["dog cat"]))
    assert isinstance(out, Markup)
    assert str(out) == "Two <mark>dogs</mark> &amp; three <mark>cats</mark> &lt;i&gt;here&lt;/i&gt;"
    long = "word " * 200 + "needle " + "word " * 200
    cut = str(highlight(long, ["needle"], width=100))
    assert cut.startswith("… ") and cut.endswith(" …") and "<mark>needle</mark>" in cut
    assert len(cut) < 140


def test_audio_tools_hide_when_the_encoder_has_no_audio(corpus):
    from fastapi.testclient import TestClient

    from search.engine import Engine
    from search.index import Index
    from search.settings import Settings
    from tests.fakes import FakeEncoder
    from web.app import create_app

    class NoAudio(FakeEncoder):
        def audio_head(self) -> None:
            return None

    app = create_app(Settings(db=corpus.db), engine=Engine(Index.open(corpus.db), NoAudio()))
    with TestClient(app) as client:
        html = client.get("/").text
        assert 'id="add-image"' in html
        assert 'id="record"' not in html and 'id="add-audio"' not in html


def test_page_shows_only_the_matches_by_default_and_sorts_on_request(client, corpus):
    names = {i: n for n, i in corpus.ids.items()}
    matches = _card_ids(client.get("/?q=green+forest").text)
    html = client.get("/?q=green+forest&show=all&sort=name").text
    everything = _card_ids(html)
    assert 0 < len(matches) < len(everything) == len(corpus.ids)
    assert [names[i] for i in everything] == sorted(names[i] for i in everything)
    assert '<option value="all" selected>' in html and '<option value="name" selected>' in html
    # the page script posts the same choices with the form
    r = client.post("/partials/results", data={"text": "green forest", "min_score": "auto", "sort": "name"})
    assert sorted(_card_ids(r.text)) == sorted(matches)
    assert [names[i] for i in _card_ids(r.text)] == sorted(names[i] for i in matches)
    r = client.post("/partials/results", data={"text": "green forest", "min_score": "lots"})
    assert r.status_code == 422 and "min_score" in r.text
    assert client.get("/?q=x&sort=size").status_code == 422
