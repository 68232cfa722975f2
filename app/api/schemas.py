"""Response bodies of the HTTP contract (docs/openapi.json)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.catalogue.products import ImagesRecord, ProductRecord
from app.catalogue.review_queue import ReviewRecord
from app.recognition.hygiene import LookAlike, NearDuplicate
from app.recognition.search import CodeAnswer, Verdict


def encoded(answer: BaseModel, status_code: int = 200) -> JSONResponse:
    """The response, validated and encoded now: built inside a write's transaction (its
    `answer`), a response that cannot be made undoes the write (app/catalogue/products.py)."""
    return JSONResponse(answer.model_dump(mode="json"), status_code=status_code)


class ProductOut(BaseModel):
    sku: str
    name: str
    metadata: dict[str, Any]
    image_count: int
    image_ids: list[int]
    catalogues: list[str]
    barcodes: list[str] = Field(description="GTIN-14: a shorter GTIN zero-padded on the left")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: ProductRecord) -> ProductOut:
        ids = product.image_ids
        return cls(
            sku=product.sku,
            name=product.name,
            metadata=product.metadata,
            image_count=len(ids),
            image_ids=ids,
            catalogues=list(product.catalogues),
            barcodes=list(product.barcodes),
            created_at=product.created_at,
            updated_at=product.updated_at,
        )


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    limit: int
    offset: int


class DuplicateWarning(BaseModel):
    """An upload that looks like another product's reference (RETAILKLIP_DUPLICATE_THRESHOLD)."""

    upload: int  # index of the upload in the request's `images`
    sku: str  # the other product
    name: str
    image_id: int  # its reference image that matched
    score: float


class ProductCreated(ProductOut):
    warnings: list[DuplicateWarning]

    @classmethod
    def made(cls, product: ProductRecord, warnings: list[NearDuplicate]) -> JSONResponse:
        """POST /products' 201, encoded (a write's `answer`)."""
        created = cls(
            **ProductOut.of(product).model_dump(),
            warnings=[DuplicateWarning(**asdict(w)) for w in warnings],
        )
        return encoded(created, 201)


class ImagesAdded(BaseModel):
    sku: str
    image_ids: list[int]  # one per upload, in order; a duplicate gets the id already stored
    added: int  # how many were new
    warnings: list[DuplicateWarning] = []

    @classmethod
    def made(cls, added: ImagesRecord, warnings: list[NearDuplicate]) -> JSONResponse:
        """A 201 of images added (POST .../images, a confirmed review item), encoded."""
        answer = cls(
            sku=added.sku,
            image_ids=added.image_ids,
            added=added.added,
            warnings=[DuplicateWarning(**asdict(w)) for w in warnings],
        )
        return encoded(answer, 201)


class MatchOut(BaseModel):
    sku: str
    name: str
    score: float
    image_id: int


VERDICT_DESCRIPTION = (
    "How sure the answer is, from the best product's score and its margin over the second: "
    "`confident`: known, at least the model's calibrated score and margin (on the calibration "
    "data the top match was right that often, see /readyz `tiers`; a checkout may accept it "
    "without a person); `ambiguous`: known but not confident (a person should look); "
    "`unknown`: exactly when `unknown` is true"
)
Tier = Annotated[
    Literal["confident", "ambiguous", "unknown"], Field(description=VERDICT_DESCRIPTION)
]


class BarcodeOut(BaseModel):
    text: str = Field(description="the code's content as printed (digits for retail codes)")
    format: str = Field(description="ean13, ean8, upca, upce, code128, qrcode or datamatrix")
    gtin: str | None = Field(description="a retail code's GTIN-14; null for other formats")
    sku: str | None = Field(description="the product holding the code; null: none does")
    box: list[int] = Field(description="where it was read: x0, y0, x1, y1 in photo pixels")

    @classmethod
    def of(cls, code: CodeAnswer) -> BarcodeOut:
        return cls(
            text=code.text, format=code.format, gtin=code.gtin, sku=code.sku, box=list(code.box)
        )


BARCODES_DESCRIPTION = (
    "Every code read in the photo (or, for a region, whose centre lies in its box); empty when "
    "none was read or reading is off. A code a product holds names that product first, "
    "`confident`, unless the image alone is confident about another product and the coded "
    "product scores under the threshold: then the matches stay the image's and the verdict is "
    "`ambiguous` (README, Barcodes)"
)
Barcodes = Annotated[list[BarcodeOut], Field(description=BARCODES_DESCRIPTION)]


class ClassifyResult(BaseModel):
    matches: list[MatchOut]
    unknown: bool
    verdict: Tier
    model: str
    barcodes: Barcodes

    @classmethod
    def of(cls, verdict: Verdict) -> ClassifyResult:
        return cls(
            matches=[
                MatchOut(sku=h.sku, name=h.name, score=h.score, image_id=h.image_id)
                for h in verdict.matches
            ],
            unknown=verdict.unknown,
            verdict=verdict.tier,
            model=verdict.model,
            barcodes=[BarcodeOut.of(c) for c in verdict.barcodes],
        )


class BatchClassifyResult(BaseModel):
    results: list[ClassifyResult]
    model: str


class RegionResult(BaseModel):
    box: list[int | float]  # as sent
    matches: list[MatchOut]
    unknown: bool
    verdict: Tier
    barcodes: Barcodes


class RegionsResult(BaseModel):
    regions: list[RegionResult]  # one per box, in order
    model: str


class CatalogueOut(BaseModel):
    name: str
    product_count: int


class CatalogueList(BaseModel):
    items: list[CatalogueOut]


class SimilarProduct(BaseModel):
    sku: str
    name: str
    score: float  # best cosine between any reference of the two products
    image_id: int  # that reference of the other product
    own_image_id: int  # and the one of the product asked about

    @classmethod
    def of(cls, look_alike: LookAlike) -> SimilarProduct:
        return cls(**asdict(look_alike))


class SimilarProducts(BaseModel):
    sku: str
    similar: list[SimilarProduct]  # most alike first
    model: str


class ErrorDetail(BaseModel):
    """The body of every error answer: one stable, human-readable message."""

    detail: str


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    model: str
    device: str
    # The inference engine in use: ONNX Runtime is CPU only, so a CUDA device reports "torch".
    runtime: Literal["torch", "onnx", "onnx-int8"]
    index_vectors: int
    shards: int
    detector: str | None = None  # the product detector's model id; null: /shelf needs boxes


ERROR_DESCRIPTIONS = {
    400: "An upload is not a decodable image, is truncated or corrupt, or is empty.",
    401: "API keys are configured and `X-API-Key` is missing or wrong.",
    403: "The key's role is below the one this route needs (`x-required-role`): nothing was done.",
    404: "Unknown product, image or catalogue.",
    409: "The sku is taken, or a concurrent write to the same product won (retry).",
    413: "The request body is over `RETAILKLIP_MAX_UPLOAD_BYTES`.",
    415: "A real image in a format the service does not take.",
    422: "A field is missing or out of its declared range, or an image has too many pixels "
    "or an aspect ratio over 20:1.",
    503: "The service is not ready, busy (more than MAX_CONCURRENCY requests in flight), or "
    "its database is unreachable or busy: retry later.",
    507: "The blob store is full: nothing was registered.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for a route: each status with the one error body model."""
    return {code: {"model": ErrorDetail, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


class ReviewCandidate(BaseModel):
    sku: str
    name: str
    score: float


class KeptBarcode(BaseModel):
    text: str
    format: str
    gtin: str | None
    sku: str | None = Field(description="the product that held it when the photo was kept")


class ReviewItemOut(BaseModel):
    id: int
    created_at: datetime
    model: str  # the model that answered
    verdict: Tier
    top_score: float | None
    margin: float | None = Field(description="the best product's lead over the second")
    candidates: list[ReviewCandidate]  # best first, at most 3
    box: list[float] | None  # the region of a `boxes` request; the photo is its crop
    barcodes: list[KeptBarcode] = Field(
        description="codes read in it; confirming the item gives the confirmed product those "
        "that no product held"
    )

    @classmethod
    def of(cls, item: ReviewRecord) -> ReviewItemOut:
        return cls(
            id=item.id,
            created_at=item.created_at,
            model=item.model_id,
            verdict=item.verdict,  # type: ignore[arg-type]  # stored from a Tier
            top_score=item.top_score,
            margin=item.margin,
            candidates=[ReviewCandidate(**c) for c in item.candidates],
            box=item.box,
            barcodes=[KeptBarcode(**c) for c in item.barcodes],
        )


class ReviewPage(BaseModel):
    mode: Literal["off", "ambiguous", "all"]  # RETAILKLIP_REVIEW
    items: list[ReviewItemOut]  # most uncertain first
    total: int
    limit: int
    offset: int


class PhotoNeed(BaseModel):
    sku: str
    uncertain: int  # kept answers that named it first without being confident
    look_alike: SimilarProduct | None  # its closest other product, if any


class PhotoNeeds(BaseModel):
    items: list[PhotoNeed]  # the products a shelf photo would help most, first
    model: str


class ShelfRegionOut(BaseModel):
    box: list[int | float]  # as sent, or as the detector found it (whole pixels)
    matches: list[MatchOut]
    unknown: bool
    verdict: Tier
    barcodes: Barcodes
    detection: float | None = Field(description="the detector's score; null for a box sent")
    shelf: int = Field(description="its row, 0 = the top one")
    position: int = Field(description="its place in the row, 0 = the leftmost")


class ShelfOut(BaseModel):
    index: int  # 0 = the top row
    box: list[float]  # the extent of its facings
    facings: int
    regions: list[int]  # indices into `regions`, left to right


class FacingsOut(BaseModel):
    sku: str | None = Field(description="null: the facings no product was recognised on")
    name: str | None
    count: int
    share: float = Field(description="of all facings counted, unknown ones included")
    width_share: float = Field(description="of the summed widths of all facings")


class GroupFacingsOut(BaseModel):
    value: str | None = Field(
        description="the metadata value (JSON text unless a string); null: unknown products "
        "and products without the key"
    )
    count: int
    share: float
    width_share: float


class GapOut(BaseModel):
    shelf: int
    after: int = Field(description="the position of the facing on its left")
    box: list[float]
    width: float


class PositionOut(BaseModel):
    shelf: int
    position: int = Field(description="in the plan's shelf, left to right")
    expected: str
    found: str | None = Field(description="what stands there; null: nothing, or unknown")
    status: Literal["ok", "wrong_product", "missing"]


class PlanogramOut(BaseModel):
    positions: list[PositionOut]
    unplanned: list[str] = Field(description="SKUs found that the plan does not have")
    score: float = Field(description="planned facings found in place / planned facings")


class ShelfReportOut(BaseModel):
    regions: list[ShelfRegionOut]
    shelves: list[ShelfOut]  # top to bottom
    facings: list[FacingsOut]  # most facings first; unknown last
    groups: list[GroupFacingsOut] | None = Field(description="with `group_by`")
    gaps: list[GapOut]
    missing: list[str] | None = Field(description="with `must_have`: the SKUs not found")
    planogram: PlanogramOut | None = Field(description="with `planogram`")
    model: str
    detector: str | None = Field(description="the detector's model id, when it found the boxes")
