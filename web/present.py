"""Core records -> the public JSON shapes (URLs added, catalog internals left out)."""

from __future__ import annotations

from typing import Any

from search.catalog import SegmentInfo
from search.engine import SearchResult
from search.paths import shown


def has_thumbnail(modality: str, stream: str | None) -> bool:
    """Images and video frames have thumbnails."""
    return modality == "image" or (modality == "video" and stream == "frame")


def item_urls(item_id: int, modality: str, prefix: str = "", stream: str | None = None) -> dict[str, str]:
    urls = {
        "media_url": f"{prefix}/api/items/{item_id}/media",
        "item_url": f"{prefix}/api/items/{item_id}",
    }
    if has_thumbnail(modality, stream):
        urls["thumbnail_url"] = f"{prefix}/api/items/{item_id}/thumbnail"
    return urls


def result_json(result: SearchResult, prefix: str = "") -> dict[str, Any]:
    out = result.to_json()
    out["results"] = [
        {**hit, **item_urls(hit["id"], hit["modality"], prefix, hit.get("stream"))} for hit in out["results"]
    ]
    return out


def item_json(info: SegmentInfo, prefix: str = "") -> dict[str, Any]:
    urls = item_urls(info.id, info.modality, prefix, info.stream)
    urls.pop("item_url")
    return {
        "id": info.id,
        "content_id": info.content_id,
        "path": shown(info.path),
        "paths": [shown(p) for p in info.paths],
        "modality": info.modality,
        "size": info.size,
        "modified": info.mtime_ns / 1e9 if info.mtime_ns else None,
        "width": info.width,
        "height": info.height,
        "duration_s": info.duration_s,
        "text": info.text,
        "char_start": info.char_start,
        "char_end": info.char_end,
        "start_s": info.start_s,
        "end_s": info.end_s,
        "page": info.page,
        "stream": info.stream,
        "ocr": info.ocr or None,
        **urls,
    }
