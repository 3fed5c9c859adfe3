"""One typed settings object; CLI flags and ``CROSSFIND_*`` environment variables fill it in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_db() -> Path:
    return Path.home() / ".local" / "share" / "crossfind" / "index"


_TRUE = {"1", "true", "yes", "on"}
# the evaluation and training data: ``../shared/data`` beside the checkout
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSFIND_", extra="ignore")

    db: Path = Field(default_factory=_default_db, description="index directory")
    model: str = Field("bundled", description="encoder name, see `crossfind models`")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "crossfind",
        description="derived caches (class-name embeddings, ONNX exports)",
    )
    batch_size: int = 32
    workers: int = 2
    max_file_mb: float = 200.0
    max_image_pixels: int = 64_000_000
    max_text_chars: int = 5_000_000
    # reading a PDF begins no page after this many seconds (the pages read so far are indexed)
    max_document_s: float = 300.0
    include_hidden: bool = False
    # follow links that lead outside the roots (recorded in the index; see README "Security model")
    follow_links: bool = False
    # indexing saves the vector store this often (and at the end); a crash loses at most this
    checkpoint_every_s: float = 30.0
    # the vector index: "backend:spec" (faiss:auto, faiss:Flat, faiss:HNSW32, faiss:IVF4096,PQ48);
    # None keeps an index's own (faiss:auto for a new one). See search/store/spec.py.
    store: str | None = None
    # the catalog of a new index: None, the SQLite file in the index folder, or a PostgreSQL URL
    # (postgresql://user@host:5432/db). The folder records it without the password; later
    # commands find it there, and take a password from this URL, PGPASSWORD or ~/.pgpass
    catalog: str | None = None
    store_exact_max: int = 200_000  # faiss:auto stays exact up to this many vectors
    store_memory_mb: float = 1024.0  # faiss:auto's budget for the ANN codes
    store_recall: float = 0.96  # recall@10 target nprobe / efSearch are tuned for
    store_rerank: bool = True  # re-score lossy codes (SQ/PQ) exactly from the stored vectors
    store_compact_fraction: float = 0.1  # fold the exact tail in past this share of the index
    store_compact_min: int = 8192
    # text passages: words per passage and overlap between neighbours
    passage_words: int = 120
    passage_overlap: int = 30
    # audio windows (seconds)
    audio_window_s: float = 5.0
    audio_hop_s: float = 2.5
    # text inside images, video frames and scanned PDF pages (see indexer/ocr.py)
    ocr: Literal["auto", "on", "off"] = "off"
    # video: a frame per scene, at least every max, at most every min seconds
    video_min_frame_s: float = 1.0
    video_max_frame_s: float = 10.0
    # web
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    open_reads: bool = True
    # the Host names the server answers to (a guard against DNS rebinding: another site's page
    # renaming itself to 127.0.0.1 to read the open API). None: localhost, 127.0.0.1 and ::1
    # when listening on a loopback address, any name otherwise; ["*"]: any name
    allowed_hosts: list[str] | None = None
    max_upload_mb: float = 20.0
    request_timeout_s: float = 30.0
    # an audio query part is embedded from its first this-many seconds (the rest is ignored and
    # the response says so): a query's cost stays bounded whatever the recording's length
    max_query_audio_s: float = Field(30.0, gt=0)
    # a query image may decode to at most this many pixels (JPEGs decode at a reduced scale, so
    # large photos pass): up to 32 searches at once must not each hold a 64-Mpx decode (~250 MB)
    max_query_image_pixels: int = Field(16_000_000, gt=0)
    roots: list[Path] = Field(default_factory=list, description="folders POST /api/index indexes")
    # ONNX Runtime intra-op threads; None: up to 2 (the cores). `crossfind serve` sets 1
    onnx_threads: int | None = None
    # "module:function" hooks (comma-separated) that register more encoder families
    extra_encoders: str = ""
    # evaluation, training and benchmarks
    shared_data: Path = Field(_SHARED_DATA, description="captioned sets and audio manifests")
    bench_api_workers: int = 1
    # Hugging Face's own variables (read here too, so nothing else reads the environment)
    hf_hub_offline: str = Field("", validation_alias="HF_HUB_OFFLINE")
    transformers_offline: str = Field("", validation_alias="TRANSFORMERS_OFFLINE")
    hf_hub_cache: str = Field("", validation_alias=AliasChoices("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"))
    hf_home: str = Field("", validation_alias="HF_HOME")
    xdg_cache_home: str = Field("", validation_alias="XDG_CACHE_HOME")

    @property
    def offline(self) -> bool:
        """True when the environment forbids hub access (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
        return any(v.strip().lower() in _TRUE for v in (self.hf_hub_offline, self.transformers_offline))

    @property
    def hf_cache(self) -> Path:
        """The Hugging Face hub cache, where huggingface_hub itself would look."""
        if self.hf_hub_cache:
            return Path(self.hf_hub_cache).expanduser()
        home = self.hf_home or str(Path(self.xdg_cache_home or "~/.cache") / "huggingface")
        return Path(home).expanduser() / "hub"


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with non-None ``overrides`` (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
