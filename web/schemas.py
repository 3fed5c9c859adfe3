"""API schemas: what clients send and get back, kept apart from catalog rows and core records."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search import query as core


# The request models carry the core's names, so /openapi.json names them QueryPart and Query.
class QueryPart(core.PartFields):
    """One part of an HTTP query: text, base64 media or an indexed item; never a local path."""

    @model_validator(mode="before")
    @classmethod
    def _no_local_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("image_path" in data or "audio_path" in data):
            raise ValueError("image_path/audio_path are for the CLI; send image_b64/audio_b64")
        return data


class Query(core.QueryOptions):
    """The JSON body of POST /api/search."""

    parts: list[QueryPart] = Field(..., min_length=1, max_length=16)

    def to_query(self) -> core.Query:
        """The core query this request asks (the one place the API's schema meets the core's)."""
        return core.Query.model_validate(self.model_dump(exclude_unset=True))


SearchRequest = Query

# a 2x2 red PNG: a query the examples in /docs can really send
_RED_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGM8"
    "ISfHwMDAxMDAwMDAAAANBAEIfXHKZgAAAABJRU5ErkJggg=="
)

SEARCH_EXAMPLES: dict[str, dict[str, Any]] = {
    "text": {
        "summary": "Text query",
        "value": {"parts": [{"text": "a dog running on the beach"}], "k": 10},
    },
    "filtered": {
        "summary": "Text query, images only, second page",
        "value": {
            "parts": [{"text": "sunset over the sea"}],
            "k": 12,
            "offset": 12,
            "filters": {"modality": ["image"]},
        },
    },
    "mixed": {
        "summary": "More like item 42, nudged by text, away from 'night'",
        "value": {
            "parts": [
                {"item_id": 42, "weight": 1.0},
                {"text": "in the snow", "weight": 0.5},
                {"text": "night", "weight": -0.3},
            ]
        },
    },
    "image": {
        "summary": "Image query: base64 bytes (a 2x2 red PNG); /api/search/upload takes files",
        "value": {
            "parts": [
                {
                    "image_b64": _RED_PNG_B64,
                    "weight": 1.0,
                }
            ],
            "k": 5,
        },
    },
}


class ResultPublic(BaseModel):
    """One hit. Fields added by later ranking stages (e.g. keyword scores) pass through."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "path": "/photos/beach/dog.jpg",
                    "modality": "image",
                    "score": 0.412,
                    "thumbnail_url": "/api/items/17/thumbnail",
                    "media_url": "/api/items/17/media",
                }
            ]
        },
    )

    id: int = Field(description="segment id: use it for item_id ('more like this')")
    path: str
    modality: Literal["text", "image", "audio", "video"]
    score: float
    snippet: str | None = Field(
        None, description="the matching passage of a text item, or the text read off an image")
    char_start: int | None = None
    char_end: int | None = None
    start_s: float | None = Field(
        None, description="start of the matching audio window or video moment")
    end_s: float | None = None
    page: int | None = Field(None, description="the document page of the passage (PDF)")
    stream: Literal["frame", "sound"] | None = Field(None, description="what matched in a video")
    ocr: bool | None = Field(None, description="matched through text read off the image")
    paths: list[str] | None = Field(None, description="all paths holding identical bytes")
    thumbnail_url: str | None = None
    media_url: str
    item_url: str


class SearchResponse(BaseModel):
    results: list[ResultPublic]
    took_ms: float
    query: dict[str, Any] = Field(default_factory=dict, description="an echo of the query")


class ItemPublic(BaseModel):
    """Metadata of one indexed segment and the file(s) it belongs to."""

    id: int
    content_id: int
    path: str
    paths: list[str]
    modality: Literal["text", "image", "audio", "video"]
    size: int = Field(description="bytes")
    modified: float | None = Field(None, description="file mtime, Unix seconds")
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    text: str | None = Field(None, description="the passage text (text items)")
    char_start: int | None = None
    char_end: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    page: int | None = None
    stream: Literal["frame", "sound"] | None = None
    ocr: bool | None = None
    media_url: str
    thumbnail_url: str | None = None


class ModalityCounts(BaseModel):
    items: int
    vectors: int


class IndexJobPublic(BaseModel):
    state: Literal["idle", "running", "done", "failed"]
    roots: list[str] = Field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    report: dict[str, Any] | None = None
    error: str | None = None


class StatsPublic(BaseModel):
    ready: bool = Field(description="an index is open and searchable")
    items: int = Field(0, description="indexed files")
    contents: int = Field(0, description="distinct file contents (duplicates stored once)")
    vectors: int = 0
    by_modality: dict[str, ModalityCounts] = Field(default_factory=dict)
    encoder: str | None = None
    dim: int | None = None
    store: str | None = None
    index_bytes: int = Field(0, description="size of the index directory's files")
    modalities: list[str] = Field(default_factory=list, description="what the encoder can embed")
    indexing: IndexJobPublic


class Health(BaseModel):
    status: Literal["ok"]
    ready: bool
    encoder: str | None = None


class Message(BaseModel):
    """The shape of every error (and of simple acknowledgements)."""

    status: int
    message: str


class DeletedPublic(BaseModel):
    deleted: int = Field(description="the item id asked for")
    paths: list[str] = Field(description="files forgotten by the index (not deleted from disk)")
    segments: int = Field(description="vectors removed")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Message, "description": desc}
    for code, desc in (
        (400, "bad request (e.g. undecodable base64)"),
        (401, "the API key is needed (writes; reads when CROSSFIND_OPEN_READS=false)"),
        (403, "wrong API key, or writes disabled (no CROSSFIND_API_KEY)"),
        (404, "no such item"),
        (413, "upload over the size cap, or a JSON body of over 10,000 values"),
        (409, "another process is writing to the index"),
        (415, "not a decodable image/audio file"),
        (422, "the request does not validate"),
        (503, "no index yet"),
        (504, "the search took longer than the request timeout"),
    )
}
