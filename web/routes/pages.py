"""The search page. ``GET /?q=...`` renders results on the server (works without JavaScript);
the page script posts the same form, with files, to ``/partials/results`` and swaps the grid."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from search.errors import CrossfindError
from search.paths import shown
from search.query import MAX_TEXT_CHARS
from web.deps import ReadAccess, ServicesDep
from web.forms import MAX_ID, FormQuery, SearchForm
from web.highlight import highlight, query_terms
from web.present import item_urls, result_json
from web.services import Services

PAGE_SIZE = 24
MAX_PAGE = 400  # Query.offset stops at 10,000

router = APIRouter(dependencies=[ReadAccess], include_in_schema=False)


def _view(hit: dict[str, Any], terms: list[str]) -> dict[str, Any]:
    """A result as the template shows it."""
    path = hit["path"]
    view = {
        **hit,
        "name": os.path.basename(path) or path,
        "folder": os.path.dirname(path),
        "score_pct": max(0, min(100, round(hit["score"] * 100))),
    }
    if hit["modality"] == "text" or hit.get("ocr"):
        view["snippet_html"] = highlight(hit.get("snippet"), terms)
    if hit.get("start_s") is not None:
        start, end = hit["start_s"], hit.get("end_s") or hit["start_s"]
        view["media_src"] = f"{hit['media_url']}#t={start:g},{end:g}"
        view["window"] = f"{start:.1f}–{end:.1f} s"
    else:
        view["media_src"] = hit["media_url"]
    return view


async def _results(services: Services, form: FormQuery, page: int) -> dict[str, Any]:
    """Run the form's query for one page; the context the results template needs."""
    form.k, form.offset = PAGE_SIZE + 1, (page - 1) * PAGE_SIZE  # one extra: is there a next page?
    result = result_json(await services.search(form.to_query()))
    hits = result["results"]
    terms = query_terms([form.text] if form.text else [])
    ctx: dict[str, Any] = {
        "results": [_view(h, terms) for h in hits[:PAGE_SIZE]],
        "has_more": len(hits) > PAGE_SIZE and page < MAX_PAGE,
        "page": page,
        "took_ms": result["took_ms"],
        "searched": True,
    }
    if form.item_id is not None:
        info = services.segment(form.item_id)
        ctx["like"] = {
            "id": info.id,
            "name": shown(os.path.basename(info.path)),
            "modality": info.modality,
            **item_urls(info.id, info.modality),
        }
    return ctx


def _page_urls(ctx: dict[str, Any]) -> None:
    """Previous/next links that work without JavaScript (plain GETs of this page)."""
    params: list[tuple[str, str]] = [("q", ctx["q"])] if ctx.get("q") else []
    params += [("modality", m) for m in ctx.get("modality", [])]
    if ctx.get("show") == "all":
        params.append(("show", "all"))
    if ctx.get("sort", "relevance") != "relevance":
        params.append(("sort", ctx["sort"]))
    if ctx.get("like_id") is not None:
        params.append(("like", str(ctx["like_id"])))
    page = ctx.get("page", 1)
    if page > 1:
        ctx["prev_url"] = "/?" + urlencode(params + [("page", str(page - 1))])
    if ctx.get("has_more"):
        ctx["next_url"] = "/?" + urlencode(params + [("page", str(page + 1))])


def _stats(services: Services) -> dict[str, Any]:
    try:
        engine = services.require_engine()
    except CrossfindError as exc:
        return {"ready": False, "message": exc.message}
    counts = engine.index.catalog.counts()
    return {
        "ready": True,
        "items": counts["items"],
        "by_modality": {m: c["items"] for m, c in counts["by_modality"].items()},
        "audio": engine.encoder.supports("audio"),
    }


@router.get("/", response_class=HTMLResponse)
async def index_page(
    request: Request,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=MAX_TEXT_CHARS)] = None,
    modality: Annotated[list[str] | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    like: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    show: Annotated[Literal["matches", "all"], Query()] = "matches",
    sort: Annotated[Literal["relevance", "date", "name"], Query()] = "relevance",
) -> HTMLResponse:
    modalities = [m for m in (modality or []) if m]
    ctx: dict[str, Any] = {
        "q": q or "",
        "modality": modalities,
        "show": show,
        "sort": sort,
        "stats": _stats(services),
        "searched": False,
        "like_id": like,
    }
    if (q and q.strip()) or like is not None:
        # the default view is only the matches: each list cut where the evidence ends
        form = FormQuery(text=q, item_id=like, modality=modalities,
                         min_score="auto" if show == "matches" else None, sort=sort)
        try:
            ctx.update(await _results(services, form, page))
            _page_urls(ctx)
        except CrossfindError as exc:
            ctx.update(error={"status": exc.status, "message": exc.message}, searched=True)
            return request.app.state.templates.TemplateResponse(
                request, "index.html", ctx, status_code=exc.status
            )
    return request.app.state.templates.TemplateResponse(request, "index.html", ctx)


@router.post("/partials/results", response_class=HTMLResponse)
async def results_partial(
    request: Request,
    services: ServicesDep,
    form: SearchForm,
    page: Annotated[int, Form(ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    ctx = await _results(services, form, page)
    ctx.update(q=form.text or "", modality=form.modality, like_id=form.item_id,
               show="matches" if form.min_score == "auto" else "all", sort=form.sort)
    _page_urls(ctx)  # the page script turns these into re-posts of the form with files
    return request.app.state.templates.TemplateResponse(request, "_results.html", ctx)
