"""The JSON API under /api/ (and /healthz)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from search.access import reopen_path
from search.errors import DiskFull, NotFound
from search.paths import shown
from search.query import Query
from web.deps import EngineDep, ReadAccess, ServicesDep, WriteAccess
from web.errors import ServiceUnavailable
from web.files import OpenFileResponse, media_type, open_media
from web.forms import MAX_ID, SearchForm, check_query
from web.json_body import JsonLimitRoute
from web.present import has_thumbnail, item_json, result_json
from web.schemas import (
    ERROR_RESPONSES,
    SEARCH_EXAMPLES,
    DeletedPublic,
    Health,
    IndexJobPublic,
    ItemPublic,
    SearchRequest,
    SearchResponse,
    StatsPublic,
)

log = logging.getLogger(__name__)

# SQLite integers are signed 64-bit: larger ids cannot exist
ItemId = Annotated[int, PathParam(ge=0, le=MAX_ID, description="an item (segment) id from a result")]

router = APIRouter(responses=ERROR_RESPONSES)
reads = APIRouter(prefix="/api", dependencies=[ReadAccess], responses=ERROR_RESPONSES,
                  route_class=JsonLimitRoute)
writes = APIRouter(prefix="/api", dependencies=[WriteAccess], responses=ERROR_RESPONSES,
                   route_class=JsonLimitRoute)


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


async def _run(request: Request, services: ServicesDep, query: Query) -> dict[str, Any]:
    check_query(query, int(services.settings.max_upload_mb * 1_000_000))
    result = await services.search(query)
    return result_json(result, _prefix(request))


@reads.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    summary="Search by text, image, audio or item (JSON)",
)
async def search(
    request: Request,
    services: ServicesDep,
    query: Annotated[SearchRequest, Body(openapi_examples=SEARCH_EXAMPLES)],
) -> dict[str, Any]:
    """One query of weighted parts. Image/audio parts carry base64 bytes; `item_id` is "more
    like this" for a result id. Results carry URLs for the media and (images) a thumbnail."""
    return await _run(request, services, query.to_query())


@reads.post(
    "/search/upload",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    summary="Search with uploaded files (multipart/form-data)",
)
async def search_upload(
    request: Request,
    services: ServicesDep,
    form: SearchForm,
    k: Annotated[int, Form(ge=1, le=1000)] = 10,
    offset: Annotated[int, Form(ge=0, le=10_000)] = 0,
) -> dict[str, Any]:
    """The same search as POST /api/search, for clients that send files rather than base64
    (e.g. `curl -F text=dog -F image=@photo.jpg`)."""
    form.k, form.offset = k, offset
    return await _run(request, services, form.to_query())


@reads.get("/items/{item_id}", response_model=ItemPublic, summary="Metadata of one item")
def get_item(request: Request, services: ServicesDep, item_id: ItemId) -> dict[str, Any]:
    return item_json(services.segment(item_id), _prefix(request))


@reads.api_route(
    "/items/{item_id}/media",
    methods=["GET", "HEAD"],
    response_class=FileResponse,
    summary="The item's file (supports HTTP Range)",
    responses={200: {"content": {"image/*": {}, "audio/*": {}, "video/*": {}, "text/plain": {}}}},
)
def get_media(services: ServicesDep, engine: EngineDep, item_id: ItemId) -> FileResponse:
    info = services.segment(item_id, readable=False)  # open_media checks the file, once
    fh, path = open_media(engine.index.catalog, info)
    return OpenFileResponse(
        fh,
        path,
        media_type=media_type(path, info.modality),
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, max-age=3600",
        },
        content_disposition_type="inline",
        filename=shown(path.name),
    )


@reads.api_route(
    "/items/{item_id}/thumbnail",
    methods=["GET", "HEAD"],
    response_class=FileResponse,
    summary="A JPEG thumbnail of an image item (made once, cached)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_thumbnail(services: ServicesDep, engine: EngineDep, item_id: ItemId) -> Response:
    info = services.segment(item_id, readable=False)  # open_media checks the file, once
    video_frame = info.modality == "video"
    if not has_thumbnail(info.modality, info.stream):
        raise NotFound(f"item {item_id} is {info.modality}; "
                       "only image items (and video frames) have thumbnails")
    headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
    fh, path = open_media(engine.index.catalog, info)  # checked even when a thumbnail is cached
    with fh:  # rendered from the checked descriptor, never by name again
        source = Path(reopen_path(fh, str(path)))
        thumbnails, moment = services.thumbnails, info.start_s or 0.0
        try:
            if video_frame:  # the matching frame
                cached = thumbnails.get_frame(info.id, info.sha256, moment, source)
            else:
                cached = thumbnails.get(info.content_id, info.sha256, source)
        except DiskFull:  # no room to cache it: serve it made afresh
            log.warning("thumbnail cache is full; serving %s uncached", info.id)
            data = thumbnails.render_frame(source, moment) if video_frame else thumbnails.render(source)
            return Response(data, media_type="image/jpeg", headers=headers)
    return FileResponse(cached, media_type="image/jpeg", headers=headers)


@reads.get("/stats", response_model=StatsPublic, summary="What the index holds")
def stats(services: ServicesDep) -> dict[str, Any]:
    out: dict[str, Any] = {"ready": False, "indexing": services.job.to_json()}
    try:
        engine = services.require_engine()
    except ServiceUnavailable:  # no index yet: an empty, not-ready server
        return out
    engine.index.refresh()
    info = engine.index.info()
    out.update(
        ready=True,
        items=info["items"],
        contents=info["contents"],
        vectors=info["vectors"],
        by_modality=info["by_modality"],
        encoder=info["encoder"],
        dim=info["dim"],
        store=info["store"],
        index_bytes=services.index_bytes(),
        modalities=sorted(str(m) for m in engine.encoder.modalities),
    )
    return out


@reads.get("/index/status", response_model=IndexJobPublic, summary="The background indexing run")
def index_status(services: ServicesDep) -> dict[str, Any]:
    return services.job.to_json()


@writes.post(
    "/index",
    response_model=IndexJobPublic,
    status_code=202,
    summary="Index the configured roots in the background (needs the API key)",
)
def start_index(services: ServicesDep) -> dict[str, Any]:
    """Starts one run over `CROSSFIND_ROOTS`; poll GET /api/index/status. Searches keep working
    while it runs and see new items after each checkpoint."""
    services.job.start()
    return services.job.to_json()


@writes.delete(
    "/items/{item_id}",
    response_model=DeletedPublic,
    summary="Forget an item's files (needs the API key; files on disk are kept)",
)
def delete_item(services: ServicesDep, item_id: ItemId) -> dict[str, Any]:
    paths, removed = services.delete_item(item_id)
    return {"deleted": item_id, "paths": [shown(p) for p in paths], "segments": removed}


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz(services: ServicesDep) -> dict[str, Any]:
    encoder = services.encoder.id if services.encoder is not None else None
    return {"status": "ok", "ready": services.engine is not None, "encoder": encoder}


router.include_router(reads)
router.include_router(writes)
