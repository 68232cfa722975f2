"""All service settings, from the environment (prefix RETAILKLIP_)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# Nothing here may import torch: `retailklip migrate`, `gc-blobs` and migrations/env.py read
# settings without loading a model.
from app.encoder.model_spec import BUILTIN_CHECKPOINTS
from app.encoder.tiers import Tiers
from app.encoder.views import parse_views

if TYPE_CHECKING:
    from app.encoder.preprocess import PreprocessConfig
    from app.index.vector_index import IndexConfig

DEFAULT_MODEL = "retailklip-lite0-shelf"

# What an API key may do, each role including the ones before it: classify (read and classify),
# edit (also register, add images, correct, review), admin (also delete).
Role = Literal["classify", "edit", "admin"]
ROLES: tuple[Role, ...] = ("classify", "edit", "admin")


def default_model() -> str:
    # The shipped finetuned checkpoint when present, else the offline ImageNet backbone.
    return DEFAULT_MODEL if BUILTIN_CHECKPOINTS[DEFAULT_MODEL].is_file() else "efficientnet-lite0"


class Settings(BaseSettings):
    # Errors never echo a value: API keys and database passwords would reach the logs.
    model_config = SettingsConfigDict(
        env_prefix="RETAILKLIP_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite file in data_dir
    blob_dir: Path | None = None  # default data_dir/blobs
    shard_dir: Path | None = None  # default data_dir/shards
    model: str = Field(default_factory=default_model)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Inference engine: "auto" = ONNX Runtime on CPU (faster, same embeddings), PyTorch on CUDA;
    # "onnx" / "onnx-int8" = a graph exported from the model at first start (INT8: quantised
    # weights), cached in onnx_dir; CUDA always runs PyTorch (app/encoder/loading.py).
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    onnx_dir: Path | None = None  # default data_dir/onnx
    api_keys: str = ""  # comma-separated; empty = no auth
    max_upload_bytes: int = 20 * 1024 * 1024
    # A request body that stops for this long, or averages under `body_min_rate` bytes per
    # second once this long has passed, is answered 408: a slow client gives its slot back.
    body_timeout_s: float = Field(default=10.0, gt=0)
    body_min_rate: float = Field(default=16384.0, gt=0)
    max_image_pixels: int = 40_000_000
    # Decoded pixels held at once by all uploads together (about 4 bytes each): bounds decoding
    # memory whatever the concurrency; an upload waits for its share.
    decode_budget_pixels: int = Field(default=80_000_000, ge=1)
    max_images_per_request: int = 32
    default_top_k: int = 5
    max_top_k: int = 100
    unknown_threshold: float = 0.5
    # The `confident` verdict tier (app/encoder/tiers.py): unset, the model's calibrated values
    # from its checkpoint; a model without them answers `ambiguous` where it would be confident.
    confident_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    confident_margin: float | None = Field(default=None, ge=0.0, le=2.0)
    # The review queue (app/recognition/review.py): off, ambiguous (every answer that is not
    # confident) or all; photos kept under data_dir/review, bounded by count and age.
    review: Literal["off", "ambiguous", "all"] = "off"
    review_max_items: int = Field(default=1000, ge=1)
    review_max_age_s: float = Field(default=7 * 86400.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    # HTTPS for the one-box case (`retailklip serve` speaks TLS itself): the certificate chain
    # and its private key, PEM files; both or neither. Behind a TLS proxy, leave them unset.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    log_level: str = "info"
    auto_migrate: bool = True
    shard_capacity: int = 100_000
    sync_interval_s: float = 2.0
    # PostgreSQL: follow the change log as writes commit (LISTEN/NOTIFY), the interval above
    # only as the fallback; false: poll only (SQLite always polls).
    log_push: bool = True
    shard_persist_interval_s: float = 30.0
    # Change-log entries older than this are pruned; a replica away longer rebuilds from SQL
    # when it comes back (docs/DEPLOYMENT.md, "Change log and model switch").
    change_log_retention_s: float = 7 * 86400.0
    max_concurrency: int = 64  # requests in flight; over it the app answers a JSON 503
    # Open connections (idle keep-alive ones too) before uvicorn answers its own plain 503:
    # a guard against connection floods, well above what MAX_CONCURRENCY lets through.
    max_connections: int = 1024
    # Images per forward pass; unset: 32 on a GPU (batching is where its speed is), 4 on a CPU
    # (a batch costs about what its images cost alone; smaller batches let decoding overlap the
    # model's work: bench/latency.py measured 1.02-1.07x the throughput of 32 at concurrency 8).
    max_batch: int | None = None
    batch_wait_ms: float = 5.0
    # Degraded views stored as extra vectors per reference image: "auto" (what the model's
    # checkpoint recommends), "none", or names from app/encoder/views.py ("thumb48,blur").
    reference_views: str = "auto"
    # Regions per /classify, catalogues per product, and the cosine over which a new
    # reference is reported as a near-duplicate of another product's.
    max_boxes: int = 16
    max_catalogues_per_product: int = 64
    duplicate_threshold: float = 0.9
    # Shard index (app/index/vector_index.py; trade-off measured in docs/DEPLOYMENT.md):
    # "auto" = exact below INDEX_THRESHOLD live vectors per shard, IVF above; "exact"; "ivf".
    index: Literal["auto", "exact", "ivf"] = "auto"
    index_threshold: int = 20_000  # exact search costs ~5 ms per query here at about this size
    index_codec: str = "SQ8"  # IVF list codes: SQ8 (1 byte/dim), SQfp16, SQ4, Flat, PQ<m>
    index_nlist: int = 0  # 0: about 4 * sqrt(vectors in the shard)
    index_nprobe: int = 16  # lists scanned per query: recall against speed (docs/PERFORMANCE.md)
    index_delta_limit: int = 4096  # exact-searched new vectors folded into the IVF past this

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both RETAILKLIP_TLS_CERT_FILE and RETAILKLIP_TLS_KEY_FILE")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self

    @field_validator("index_codec")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value not in ("SQ8", "SQfp16", "SQ4", "SQ6", "Flat") and not (
            value.startswith("PQ") and value[2:].isdigit()
        ):
            raise ValueError("must be SQ8, SQfp16, SQ6, SQ4, Flat or PQ<m>")
        return value

    @field_validator("index_threshold", "index_nprobe", "index_delta_limit")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @property
    def index_config(self) -> IndexConfig:
        from app.index.vector_index import IndexConfig  # faiss: not for settings-only commands

        return IndexConfig(
            kind=self.index,
            threshold=self.index_threshold,
            codec=self.index_codec,
            nlist=self.index_nlist,
            nprobe=self.index_nprobe,
            delta_limit=self.index_delta_limit,
        )

    @field_validator("shard_capacity", "max_batch", "default_top_k", "max_upload_bytes")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    def resolved_tiers(self, calibrated: Tiers | None) -> Tiers | None:
        """The model's calibrated tiers with these settings' overrides; None when either
        threshold is known from neither."""
        score = self.confident_score
        margin = self.confident_margin
        if calibrated is not None:
            score = calibrated.confident_score if score is None else score
            margin = calibrated.confident_margin if margin is None else margin
        if score is None or margin is None:
            return None
        if calibrated is not None and (score, margin) == (
            calibrated.confident_score,
            calibrated.confident_margin,
        ):
            return calibrated
        return Tiers(score, margin, calibrated_on="settings")

    def resolved_max_batch(self, device: str) -> int:
        if self.max_batch is not None:
            return self.max_batch
        return 4 if device == "cpu" else 32

    @field_validator("reference_views")
    @classmethod
    def _known_views(cls, value: str) -> str:
        if value.strip() != "auto":
            parse_views(value)  # raises ValueError naming the unknown views
        return value.strip()

    def resolved_reference_views(self, preprocess: PreprocessConfig) -> tuple[str, ...]:
        if self.reference_views == "auto":
            return preprocess.reference_views
        return parse_views(self.reference_views)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'retailklip.db').resolve()}"

    @property
    def safe_database_url(self) -> str:
        return make_url(self.resolved_database_url).render_as_string(hide_password=True)

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def resolved_onnx_dir(self) -> Path:
        return self.onnx_dir or self.data_dir / "onnx"

    @property
    def resolved_review_dir(self) -> Path:
        return self.data_dir / "review"

    @property
    def resolved_shard_dir(self) -> Path:
        return self.shard_dir or self.data_dir / "shards"

    @property
    def api_key_list(self) -> list[str]:
        return list(self.api_key_roles)

    @property
    def api_key_roles(self) -> dict[str, Role]:
        """`key:role` entries (roles: ROLES); a bare key is an admin key, as before roles."""
        roles: dict[str, Role] = {}
        for entry in (e.strip() for e in self.api_keys.split(",")):
            if not entry:
                continue
            key, colon, role = entry.rpartition(":")
            if colon:
                roles[key] = role  # type: ignore[assignment]  # `_known_roles` checked it
            else:
                roles[entry] = "admin"
        return roles

    @field_validator("api_keys")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        # A typo in a role must not turn a checkout lane's key into an admin key.
        for entry in (e.strip() for e in value.split(",")):
            key, colon, role = entry.rpartition(":")
            if colon and (not key or role not in ROLES):
                raise ValueError(f"API key entry '...:{role}': the role must be one of {ROLES}")
        return value
