"""The typed query: parts (text, image, audio, or an indexed item) with weights, a fusion
strategy, k, filters and a relevance threshold. The CLI, the JSON API and the page all build one.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search.errors import BadRequest
from search.paths import shown

# a text part's length cap: MiniLM reads 256 tokens anyway, and every word is a keyword term
MAX_TEXT_CHARS = 10_000
# filter caps: Linux paths are at most 4096 bytes (PATH_MAX), names 255 (NAME_MAX); each
# extension is one more SQL condition, and SQLite stops at 1000 levels of them
MAX_FILTER_PATH_CHARS = 4096
MAX_EXTS = 256
MAX_EXT_CHARS = 255
FusionName = Literal["weighted", "attention", "attention_learned", "rrf", "score_sum"]
SortName = Literal["relevance", "date", "name"]


class PartFields(BaseModel):
    """What every query part has: exactly one of text, image_b64, audio_b64, item_id, and a
    weight (the HTTP API's part is this; the core's adds local paths)."""

    model_config = ConfigDict(extra="forbid")
    _SOURCES: ClassVar[tuple[str, ...]] = ("text", "image_b64", "audio_b64", "item_id")

    text: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        examples=["a dog on a beach"],
        description=f"at most {MAX_TEXT_CHARS:,} characters (longer: 422)",
    )
    image_b64: str | None = Field(
        None,
        description="base64 image bytes (JPEG, PNG, ...); at most CROSSFIND_MAX_IMAGE_PIXELS "
        "pixels, decoding to at most CROSSFIND_MAX_QUERY_IMAGE_PIXELS (more: 413)",
    )
    audio_b64: str | None = Field(
        None,
        description="base64 audio bytes (WAV, FLAC, OGG, MP3, ...); only the first "
        "CROSSFIND_MAX_QUERY_AUDIO_S seconds (default 30) are decoded and used, and the query "
        "echo of a longer part says so (audio_used_s, audio_truncated)",
    )
    item_id: int | None = Field(None, ge=0, le=2**63 - 1, description="an indexed result id: more like this")
    weight: float = Field(1.0, ge=-10.0, le=10.0, description="negative weights push away")

    @model_validator(mode="after")
    def _one_kind(self) -> PartFields:
        given = [k for k in self._SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a query part needs exactly one of text, image_b64, audio_b64, item_id; got "
                + (", ".join(given) or "none")
            )
        return self


class QueryPart(PartFields):
    """One part of the core query: a ``PartFields`` or a local file (the CLI's)."""

    _SOURCES: ClassVar[tuple[str, ...]] = PartFields._SOURCES + ("image_path", "audio_path")

    image_path: str | None = Field(None, exclude=True, description="local image file (CLI)")
    audio_path: str | None = Field(None, exclude=True, description="local audio file (CLI)")

    @property
    def kind(self) -> Literal["text", "image", "audio", "item"]:
        if self.text is not None:
            return "text"
        if self.image_b64 is not None or self.image_path is not None:
            return "image"
        if self.audio_b64 is not None or self.audio_path is not None:
            return "audio"
        return "item"

    def media_bytes(self) -> bytes:
        """Raw bytes of an image/audio part (decoded base64 or the local file)."""
        data = self.image_b64 if self.image_b64 is not None else self.audio_b64
        if data is not None:
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest(f"{self.kind} part is not valid base64: {exc}") from None
        path = self.image_path if self.image_path is not None else self.audio_path
        try:
            with open(path, "rb") as fh:  # type: ignore[arg-type]
                return fh.read()
        except OSError as exc:
            raise BadRequest(f"cannot read {path}: {exc.strerror}") from None

    def describe(self) -> dict[str, object]:
        """A JSON-safe echo of the part (no media bytes)."""
        out: dict[str, object] = {"kind": self.kind, "weight": self.weight}
        if self.text is not None:
            out["text"] = self.text
        if self.item_id is not None:
            out["item_id"] = self.item_id
        if self.image_path or self.audio_path:
            out["path"] = self.image_path or self.audio_path
        return out


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: list[Literal["text", "image", "audio", "video"]] | None = None
    path_prefix: str | None = Field(None, description=f"at most {MAX_FILTER_PATH_CHARS} characters")
    path_glob: str | None = Field(
        None, examples=["*/holidays/*.jpg"], description=f"at most {MAX_FILTER_PATH_CHARS} characters")
    ext: list[str] | None = Field(
        None, max_length=MAX_EXTS, examples=[["jpg", "png"]], description=f"at most {MAX_EXTS}")
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    min_duration_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_duration_s: float | None = Field(None, ge=0, allow_inf_nan=False)

    # plain checks, not str constraints: those refuse lone surrogates, which the CLI's
    # undecodable file names are (``search.paths``)
    @field_validator("path_prefix", "path_glob")
    @classmethod
    def _path_like(cls, value: str | None) -> str | None:
        return None if value is None else _path_text(value, MAX_FILTER_PATH_CHARS)

    @field_validator("ext")
    @classmethod
    def _exts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_path_text(e, MAX_EXT_CHARS) for e in value]

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def describe(self) -> dict[str, object]:
        """The filters set, JSON-safe: a path holding undecodable bytes is shown escaped."""
        out = self.model_dump(mode="json", exclude_none=True)
        for key in ("path_prefix", "path_glob"):
            if key in out:
                out[key] = _json_safe(out[key])
        if "ext" in out:
            out["ext"] = [_json_safe(e) for e in out["ext"]]
        return out


def _path_text(value: str, cap: int) -> str:
    if len(value) > cap:
        raise ValueError(f"at most {cap} characters (no path is longer)")
    if "\x00" in value:
        raise ValueError("no path holds a NUL character")
    return value


def _json_safe(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: an undecodable name (search.paths)
        return shown(value)
    return value


class QueryOptions(BaseModel):
    """Everything of a query but its parts (shared by the core query and the HTTP request)."""

    model_config = ConfigDict(extra="forbid")

    fusion: FusionName = Field(
        "attention_learned",
        description="how parts combine: attention_learned (default: per-query weights from a "
        "small model trained on composed queries), attention (fixed formula), weighted "
        "(plain weighted average), rrf or score_sum (late fusion of per-part results). "
        "One-part queries give the same results under every strategy.",
    )
    k: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000, description="skip this many results (paging)")
    filters: Filters = Field(default_factory=Filters)
    min_score: Annotated[float, Field(allow_inf_nan=False)] | Literal["auto"] | None = Field(
        None,
        description='calibrated relevance threshold (0..1), or "auto": each query\'s list is cut '
        "where the evidence ends (short when few items match)",
    )
    sort: SortName = Field(
        "relevance",
        description="order of the kept hits: relevance (the ranking), date (file modified time, "
        "newest first) or name (the shown path). With a threshold every kept hit is sorted; "
        "without one, the first offset + k by relevance",
    )
    hybrid: bool = Field(True, description="fuse keyword (FTS5) hits into text queries")
    group: bool = Field(True, description="one hit per item (its best passage/window)")


class Query(QueryOptions):
    """The typed query the engine answers."""

    parts: list[QueryPart] = Field(..., min_length=1, max_length=16)

    @classmethod
    def text(cls, text: str, **kwargs: object) -> Query:
        return cls(parts=[QueryPart(text=text)], **kwargs)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "parts": [p.describe() for p in self.parts],
            "fusion": self.fusion,
            "k": self.k,
        }
        if len(self.parts) == 1 and self.parts[0].text is not None:
            out["text"] = self.parts[0].text
        if not self.filters.is_empty():
            out["filters"] = self.filters.describe()
        if self.min_score is not None:
            out["min_score"] = self.min_score
        if self.sort != "relevance":
            out["sort"] = self.sort
        if self.offset:
            out["offset"] = self.offset
        return out
