"""Turning form fields and uploads into the core's ``Query``, with the upload checks the API and
the page share (size cap, declared type, local paths refused)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, File, Form, UploadFile
from pydantic import ValidationError

from search.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from search.query import MAX_TEXT_CHARS, Filters, Query, QueryPart
from web.deps import ServicesDep
from web.errors import Unprocessable, validation_message

MODALITIES = ("text", "image", "audio", "video")
MAX_ID = 2**63 - 1  # SQLite integers are signed 64-bit


@dataclass
class FormQuery:
    """The fields of the search form (page) and of POST /api/search/upload."""

    text: str | None = None
    text_weight: float = 1.0
    image: bytes | None = None
    image_weight: float = 1.0
    audio: bytes | None = None
    audio_weight: float = 1.0
    item_id: int | None = None
    item_weight: float = 1.0
    modality: list[str] = field(default_factory=list)
    k: int = 10
    offset: int = 0
    fusion: str = Query.model_fields["fusion"].default  # the API's default strategy
    min_score: float | str | None = None  # a relevance threshold, or "auto"
    sort: str = "relevance"

    def to_query(self) -> Query:
        parts: list[dict[str, object]] = []
        if self.text and self.text.strip():
            parts.append({"text": self.text.strip(), "weight": self.text_weight})
        if self.image is not None:
            parts.append({"image_b64": _b64(self.image), "weight": self.image_weight})
        if self.audio is not None:
            parts.append({"audio_b64": _b64(self.audio), "weight": self.audio_weight})
        if self.item_id is not None:
            parts.append({"item_id": self.item_id, "weight": self.item_weight})
        if not parts:
            raise BadRequest("nothing to search for: give text, an image, a sound or an item")
        unknown = [m for m in self.modality if m not in MODALITIES]
        if unknown:
            raise Unprocessable(f"unknown modality {unknown[0]!r}; use text, image, audio or video")
        try:
            return Query(
                parts=[QueryPart(**p) for p in parts],
                k=self.k,
                offset=self.offset,
                fusion=self.fusion,
                filters=Filters(modality=self.modality or None),
                min_score=self.min_score,
                sort=self.sort,
            )
        except ValidationError as exc:
            raise Unprocessable(validation_message(exc.errors())) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def read_upload(upload: UploadFile | None, kind: str, max_bytes: int) -> bytes | None:
    """The bytes of an uploaded image/audio file, or None when the field was left empty.

    Raises:
        PayloadTooLarge: over ``max_bytes``.
        UnsupportedMedia: declared as another kind of file (e.g. text/plain for an image).
    """
    if upload is None or (not upload.filename and not upload.size):
        return None
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    major = declared.split("/")[0]
    # browsers declare real types; generic ones (octet-stream, empty) are sniffed by decoding
    if (
        major in ("text", "image", "audio", "video", "font", "model", "multipart", "message")
        and major != kind
        and not (kind == "audio" and declared in ("video/webm", "video/ogg", "video/mp4"))
    ):
        raise UnsupportedMedia(f"the {kind} field got a {declared} file; send an {kind} file")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the {kind} file is over the {max_bytes // 1_000_000} MB upload cap")
    if not data:
        return None
    return data


def check_query(query: Query, max_bytes: int) -> None:
    """Refuse what an API client may not ask: ids no row can have, oversized media (local
    paths cannot be asked: the request schema has none, ``web.schemas.QueryPart``).

    Raises:
        Unprocessable: an impossible item id.
        PayloadTooLarge: a decoded image/audio part is over the upload cap.
    """
    for part in query.parts:
        if part.item_id is not None and part.item_id > MAX_ID:
            raise Unprocessable(f"item_id: no item has an id over {MAX_ID}")
        data = part.image_b64 if part.image_b64 is not None else part.audio_b64
        if data is not None and len(data) * 3 // 4 > max_bytes:
            raise PayloadTooLarge(
                f"the {part.kind} part is over the {max_bytes // 1_000_000} MB upload cap"
            )


Weight = Annotated[float, Form(ge=-10.0, le=10.0)]


async def search_form(
    services: ServicesDep,
    text: Annotated[str | None, Form(max_length=MAX_TEXT_CHARS, examples=["a dog on a beach"])] = None,
    text_weight: Weight = 1.0,
    image: Annotated[UploadFile | None, File(description="image query file")] = None,
    image_weight: Weight = 1.0,
    audio: Annotated[UploadFile | None, File(description="audio query file")] = None,
    audio_weight: Weight = 1.0,
    item_id: Annotated[int | None, Form(ge=0, le=MAX_ID, description="more like this")] = None,
    item_weight: Weight = 1.0,
    modality: Annotated[list[Literal["text", "image", "audio", "video"]] | None, Form()] = None,
    min_score: Annotated[str | None, Form(max_length=32, description='a relevance threshold 0..1, '
                                          'or "auto": only the matches')] = None,
    sort: Annotated[Literal["relevance", "date", "name"], Form()] = "relevance",
) -> FormQuery:
    """The multipart search fields (API upload and page script alike), uploads read and checked."""
    cap = int(services.settings.max_upload_mb * 1_000_000)
    return FormQuery(
        text=text,
        text_weight=text_weight,
        image=await read_upload(image, "image", cap),
        image_weight=image_weight,
        audio=await read_upload(audio, "audio", cap),
        audio_weight=audio_weight,
        item_id=item_id,
        item_weight=item_weight,
        modality=list(modality or []),
        min_score=parse_min_score(min_score),
        sort=sort,
    )


def parse_min_score(value: str | None) -> float | str | None:
    """A form's ``min_score``: empty -> None, "auto", or a number (else 422)."""
    if value is None or not value.strip():
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise Unprocessable(f"min_score: expected a number or auto, got {value!r}") from None


SearchForm = Annotated[FormQuery, Depends(search_form)]
