"""All service settings, from the environment (prefix RETAILKLIP_), grouped by concern.

The variables' names are the contract (the README's table lists each), so `Settings` keeps them
flat, one field per variable, in sections by concern; each section is handed out as one frozen
record (`settings.storage`, `.model_choice`, `.detection`, `.barcode_reading`, `.index_config`,
`.sync`, `.limits`, `.batching`, `.review_queue`, `.auth`, `.server`), already resolved
(defaults that depend on other settings filled in), and each part of the service gets only its
own. Nothing here may import torch or FAISS: `retailklip migrate`, `gc-blobs` and
migrations/env.py read settings without loading a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from app.barcodes.formats import CodeFormat, parse_formats
from app.encoder.model_spec import BUILTIN_CHECKPOINTS
from app.encoder.views import parse_views
from app.index.config import IndexConfig, IndexKind

DEFAULT_MODEL = "retailklip-lite0-shelf"
_INDEX = IndexConfig()  # the index section's defaults are IndexConfig's own

# What an API key may do, each role including the ones before it: classify (read and classify),
# edit (also register, add images, correct, review), admin (also delete).
Role = Literal["classify", "edit", "admin"]
ROLES: tuple[Role, ...] = ("classify", "edit", "admin")
ApiKeys = Mapping[str, Role]  # key -> role; empty: no authentication


def default_model() -> str:
    # The shipped finetuned checkpoint when present, else the offline ImageNet backbone.
    return DEFAULT_MODEL if BUILTIN_CHECKPOINTS[DEFAULT_MODEL].is_file() else "efficientnet-lite0"


def parse_api_keys(value: Any) -> Any:
    """`key:role, key2` -> {key: role}; a bare key is an admin key, as before roles. A role
    typo must not turn a checkout lane's key into an admin key: it is refused, and the
    message shows the role, never the key."""
    if not isinstance(value, str):
        return value
    keys: dict[str, str] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        key, colon, role = entry.rpartition(":")
        if not colon:
            key, role = entry, "admin"
        if not key or role not in ROLES:
            raise ValueError(f"API key entry '...:{role}': the role must be one of {ROLES}")
        keys[key] = role
    return keys


@dataclass(frozen=True)
class StorageSettings:
    database_url: str
    data_dir: Path
    blob_dir: Path  # reference images' bytes
    shard_dir: Path  # FAISS shard files (a cache)
    review_dir: Path  # the review queue's photos
    auto_migrate: bool

    @property
    def safe_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class ModelSettings:
    """The encoder and how it runs (satisfies app/encoder/loading.py `EncoderChoice`)."""

    model: str
    device: str
    runtime: str
    onnx_dir: Path
    reference_views: str  # "auto", "none" or view names
    confident_score: float | None  # overrides of the model's calibrated verdict tiers
    confident_margin: float | None


@dataclass(frozen=True)
class DetectorSettings:
    graph: str  # "auto", "off" or a path (app/detector/choice.py)
    score: float | None  # the score from which a box counts; None: the graph's own
    max_boxes: int


@dataclass(frozen=True)
class BarcodeSettings:
    """Reading the barcodes of uploaded photos (app/runtime/code_reading.py)."""

    enabled: bool
    budget_ms: float
    formats: frozenset[CodeFormat]
    read_side: int
    threads: int


@dataclass(frozen=True)
class SyncSettings:
    """How a replica's shards follow SQL."""

    shard_capacity: int
    interval_s: float
    log_push: bool
    persist_interval_s: float
    log_retention_s: float


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and what the process takes on at once."""

    max_upload_bytes: int
    body_timeout_s: float
    body_min_rate: float
    max_image_pixels: int
    decode_budget_pixels: int
    max_images_per_request: int
    default_top_k: int
    max_top_k: int
    unknown_threshold: float
    max_boxes: int
    max_catalogues_per_product: int
    duplicate_threshold: float
    max_concurrency: int
    max_connections: int


@dataclass(frozen=True)
class Batching:
    max_batch: int | None  # None: by device
    wait_ms: float

    def size_for(self, device: str) -> int:
        """Images per forward pass: 32 on a GPU (batching is where its speed is), 4 on a CPU
        (a batch costs about what its images cost alone; smaller batches let decoding overlap
        the model's work: bench/latency.py measured 1.02-1.07x the throughput of 32 at
        concurrency 8)."""
        if self.max_batch is not None:
            return self.max_batch
        return 4 if device == "cpu" else 32


@dataclass(frozen=True)
class ReviewSettings:
    mode: Literal["off", "ambiguous", "all"]
    max_items: int
    max_age_s: float


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    log_level: str
    tls_cert_file: Path | None
    tls_key_file: Path | None


class Settings(BaseSettings):
    # Errors never echo a value: API keys and database passwords would reach the logs.
    model_config = SettingsConfigDict(
        env_prefix="RETAILKLIP_", extra="ignore", hide_input_in_errors=True
    )

    # ---- storage --------------------------------------------------------------------------
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite file in data_dir
    blob_dir: Path | None = None  # default data_dir/blobs
    shard_dir: Path | None = None  # default data_dir/shards
    auto_migrate: bool = True

    # ---- model ----------------------------------------------------------------------------
    model: str = Field(default_factory=default_model)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Inference engine: "auto" = ONNX Runtime on CPU (faster, same embeddings), PyTorch on CUDA;
    # "onnx" / "onnx-int8" = a graph exported from the model (INT8: quantised weights), cached
    # in onnx_dir; CUDA always runs PyTorch (app/encoder/loading.py).
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    onnx_dir: Path | None = None  # default data_dir/onnx
    # Degraded views stored as extra vectors per reference image: "auto" (what the model's
    # checkpoint recommends), "none", or names from app/encoder/views.py ("thumb48,blur").
    reference_views: str = "auto"
    # The `confident` verdict tier (app/recognition/tiers.py): unset, the model's calibrated
    # values from its checkpoint; a model without them answers `ambiguous` where it would be
    # confident.
    confident_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    confident_margin: float | None = Field(default=None, ge=0.0, le=2.0)

    # ---- detector: finding the products of a shelf photo without boxes (POST /shelf) -----
    # "auto": the detector shipped in app/models/ when present; "off"; or a graph's path.
    detector: str = "auto"
    detector_score: float | None = Field(default=None, ge=0.0, le=1.0)  # None: the graph's
    detector_max_boxes: int = Field(default=300, ge=1)  # products kept per photo, best first

    # ---- barcodes: exact answers when the photo shows one (README, "Barcodes") -------------
    barcodes: bool = True
    barcode_budget_ms: float = Field(default=100.0, gt=0)  # reading time per photo, at most
    barcode_formats: str = "ean13,ean8,upca,upce"  # the names in app/barcodes/formats.py
    # A photo is decoded again for reading at about this long side (a 12 MP photo at half
    # size, which keeps a code printed at 2 px per bar readable; the model sees 224 px).
    barcode_read_side: int = Field(default=2000, ge=256)
    barcode_threads: int = Field(default=2, ge=1)  # photos read at once

    # ---- index (app/index/config.py; trade-off measured in docs/PERFORMANCE.md) ------------
    # "auto" = exact below INDEX_THRESHOLD live vectors per shard, IVF above; "exact"; "ivf".
    index: IndexKind = _INDEX.kind
    index_threshold: int = _INDEX.threshold
    index_codec: str = _INDEX.codec
    index_nlist: int = _INDEX.nlist
    index_nprobe: int = _INDEX.nprobe
    index_delta_limit: int = _INDEX.delta_limit

    # ---- sync: how a replica's shards follow SQL ------------------------------------------
    shard_capacity: int = Field(default=100_000, ge=1)
    sync_interval_s: float = 2.0
    # PostgreSQL: follow the change log as writes commit (LISTEN/NOTIFY), the interval above
    # only as the fallback; false: poll only (SQLite always polls).
    log_push: bool = True
    shard_persist_interval_s: float = 30.0
    # Change-log entries older than this are pruned; a replica away longer rebuilds from SQL
    # when it comes back (docs/DEPLOYMENT.md, "Change log and model switch").
    change_log_retention_s: float = 7 * 86400.0

    # ---- limits -----------------------------------------------------------------------------
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # A request body that stops for this long, or averages under `body_min_rate` bytes per
    # second once this long has passed, is answered 408: a slow client gives its slot back.
    body_timeout_s: float = Field(default=10.0, gt=0)
    body_min_rate: float = Field(default=16384.0, gt=0)
    max_image_pixels: int = 40_000_000
    # Decoded pixels held at once by all uploads together (about 4 bytes each): bounds decoding
    # memory whatever the concurrency; an upload waits for its share.
    decode_budget_pixels: int = Field(default=80_000_000, ge=1)
    max_images_per_request: int = 32
    default_top_k: int = Field(default=5, ge=1)
    max_top_k: int = 100
    unknown_threshold: float = 0.5
    # Regions per /classify, catalogues per product, and the cosine over which a new
    # reference is reported as a near-duplicate of another product's.
    max_boxes: int = Field(default=300, ge=1)  # real shelves show up to ~130 products
    max_catalogues_per_product: int = 64
    duplicate_threshold: float = 0.9
    max_concurrency: int = 64  # requests in flight; over it the app answers a JSON 503
    # Open connections (idle keep-alive ones too) before uvicorn answers its own plain 503:
    # a guard against connection floods, well above what MAX_CONCURRENCY lets through.
    max_connections: int = 1024

    # ---- batching ---------------------------------------------------------------------------
    max_batch: int | None = Field(default=None, ge=1)  # images per forward pass (by device)
    batch_wait_ms: float = 5.0

    # ---- review queue (app/recognition/review.py) -------------------------------------------
    review: Literal["off", "ambiguous", "all"] = "off"
    review_max_items: int = Field(default=1000, ge=1)
    review_max_age_s: float = Field(default=7 * 86400.0, gt=0)

    # ---- auth: comma-separated `key` (admin) or `key:role`; empty = no auth ---------------
    api_keys: Annotated[dict[str, Role], NoDecode, BeforeValidator(parse_api_keys)] = Field(
        default_factory=dict
    )

    # ---- server -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # HTTPS for the one-box case (`retailklip serve` speaks TLS itself): the certificate chain
    # and its private key, PEM files; both or neither. Behind a TLS proxy, leave them unset.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    # ---- checks -----------------------------------------------------------------------------
    @field_validator("reference_views")
    @classmethod
    def _known_views(cls, value: str) -> str:
        if value.strip() != "auto":
            parse_views(value)  # raises ValueError naming the unknown views
        return value.strip()

    @field_validator("barcode_formats")
    @classmethod
    def _known_formats(cls, value: str) -> str:
        if not parse_formats(value):  # raises ValueError naming the unknown format
            raise ValueError("name at least one barcode format (or set RETAILKLIP_BARCODES=false)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self.index_config  # noqa: B018  # IndexConfig checks its own fields
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both RETAILKLIP_TLS_CERT_FILE and RETAILKLIP_TLS_KEY_FILE")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self

    # ---- the groups -------------------------------------------------------------------------
    @cached_property
    def storage(self) -> StorageSettings:
        database_url = self.database_url or (
            f"sqlite:///{(self.data_dir / 'retailklip.db').resolve()}"
        )
        return StorageSettings(
            database_url=database_url,
            data_dir=self.data_dir,
            blob_dir=self.blob_dir or self.data_dir / "blobs",
            shard_dir=self.shard_dir or self.data_dir / "shards",
            review_dir=self.data_dir / "review",
            auto_migrate=self.auto_migrate,
        )

    @cached_property
    def model_choice(self) -> ModelSettings:
        return ModelSettings(
            model=self.model,
            device=self.device,
            runtime=self.runtime,
            onnx_dir=self.onnx_dir or self.data_dir / "onnx",
            reference_views=self.reference_views,
            confident_score=self.confident_score,
            confident_margin=self.confident_margin,
        )

    @cached_property
    def index_config(self) -> IndexConfig:
        try:
            return IndexConfig(
                kind=self.index,
                threshold=self.index_threshold,
                codec=self.index_codec,
                nlist=self.index_nlist,
                nprobe=self.index_nprobe,
                delta_limit=self.index_delta_limit,
            )
        except ValueError as exc:
            raise ValueError(f"index: {exc}") from None

    @cached_property
    def detection(self) -> DetectorSettings:
        return DetectorSettings(self.detector, self.detector_score, self.detector_max_boxes)

    @cached_property
    def barcode_reading(self) -> BarcodeSettings:
        return BarcodeSettings(
            enabled=self.barcodes,
            budget_ms=self.barcode_budget_ms,
            formats=parse_formats(self.barcode_formats),
            read_side=self.barcode_read_side,
            threads=self.barcode_threads,
        )

    @cached_property
    def sync(self) -> SyncSettings:
        return SyncSettings(
            shard_capacity=self.shard_capacity,
            interval_s=self.sync_interval_s,
            log_push=self.log_push,
            persist_interval_s=self.shard_persist_interval_s,
            log_retention_s=self.change_log_retention_s,
        )

    @cached_property
    def limits(self) -> Limits:
        return Limits(
            max_upload_bytes=self.max_upload_bytes,
            body_timeout_s=self.body_timeout_s,
            body_min_rate=self.body_min_rate,
            max_image_pixels=self.max_image_pixels,
            decode_budget_pixels=self.decode_budget_pixels,
            max_images_per_request=self.max_images_per_request,
            default_top_k=self.default_top_k,
            max_top_k=self.max_top_k,
            unknown_threshold=self.unknown_threshold,
            max_boxes=self.max_boxes,
            max_catalogues_per_product=self.max_catalogues_per_product,
            duplicate_threshold=self.duplicate_threshold,
            max_concurrency=self.max_concurrency,
            max_connections=self.max_connections,
        )

    @cached_property
    def batching(self) -> Batching:
        return Batching(max_batch=self.max_batch, wait_ms=self.batch_wait_ms)

    @cached_property
    def review_queue(self) -> ReviewSettings:
        return ReviewSettings(self.review, self.review_max_items, self.review_max_age_s)

    @property
    def auth(self) -> ApiKeys:
        return self.api_keys

    @cached_property
    def server(self) -> ServerSettings:
        return ServerSettings(
            self.host, self.port, self.log_level, self.tls_cert_file, self.tls_key_file
        )
