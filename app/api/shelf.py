"""`POST /shelf`: a shelf photo in, the shelf's facts out (app/recognition/shelf.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form

from app.api.classify import OptionsDep
from app.api.deps import LimitsDep, ShelfDep
from app.api.json_fields import parse_boxes, parse_planogram
from app.api.schemas import (
    ClassifyResult,
    FacingsOut,
    GapOut,
    GroupFacingsOut,
    PlanogramOut,
    PositionOut,
    ShelfOut,
    ShelfRegionOut,
    ShelfReportOut,
    errors,
)
from app.api.scope import ScopeDep
from app.api.types import BoxesText, GroupBy, ImageUpload, MustHave, Omittable, PlanogramText
from app.api.uploads import read_all
from app.recognition.shelf import ShelfChecks, ShelfReport
from app.strict_json import loads_strict

router = APIRouter(tags=["shelf"])


@router.post("/shelf", operation_id="auditShelf", responses=errors(400, 404, 413, 415, 422, 503))
async def audit_shelf(
    audit: ShelfDep,
    limits: LimitsDep,
    options: OptionsDep,
    scope: ScopeDep,
    image: Annotated[ImageUpload, File()],
    boxes: Annotated[Omittable[BoxesText], Form()] = None,
    planogram: Annotated[Omittable[PlanogramText], Form()] = None,
    must_have: Annotated[Omittable[MustHave], Form()] = None,
    group_by: Annotated[Omittable[GroupBy], Form()] = None,
) -> ShelfReportOut:
    """Every product on a shelf or fridge photo named and placed: rows, facings per SKU (and
    per metadata value with `group_by`), gaps, and with `planogram` / `must_have` the checks.
    Without `boxes` the service's product detector finds the products."""
    checks = ShelfChecks(
        planogram=None if planogram is None else parse_planogram(planogram),
        must_have=must_have,
        group_by=group_by,
    )
    regions = None if boxes is None else parse_boxes(boxes, limits.max_boxes)
    [data] = await read_all([image], "image", 1)
    report = await audit.audit(data, regions, options, scope, checks)
    return answer(report, None if boxes is None else loads_strict(boxes))


def answer(report: ShelfReport, sent: list[list[float]] | None) -> ShelfReportOut:
    """The report as the contract words it; boxes sent are served back as sent."""
    names = {m.sku: m.name for r in report.regions for m in r.verdict.matches if r.sku == m.sku}
    regions = [
        ShelfRegionOut(
            box=sent[i] if sent is not None else [int(v) for v in region.box],
            **ClassifyResult.of(region.verdict).model_dump(
                include={"matches", "unknown", "verdict", "barcodes"}
            ),
            detection=None if region.detection is None else round(region.detection, 4),
            shelf=region.shelf,
            position=region.position,
        )
        for i, region in enumerate(report.regions)
    ]
    return ShelfReportOut(
        regions=regions,
        shelves=[
            ShelfOut(
                index=row.index,
                box=list(row.box),
                facings=len(row.members),
                regions=list(row.members),
            )
            for row in report.rows
        ],
        facings=[
            FacingsOut(
                sku=f.key,
                name=names.get(f.key) if f.key is not None else None,
                count=f.count,
                share=f.share,
                width_share=f.width_share,
            )
            for f in report.facings
        ],
        groups=None
        if report.groups is None
        else [
            GroupFacingsOut(value=g.key, count=g.count, share=g.share, width_share=g.width_share)
            for g in report.groups
        ],
        gaps=[
            GapOut(shelf=g.shelf, after=g.after, box=list(g.box), width=g.width)
            for g in report.gaps
        ],
        missing=report.missing,
        planogram=None
        if report.planogram is None
        else PlanogramOut(
            positions=[
                PositionOut(
                    shelf=p.shelf,
                    position=p.position,
                    expected=p.expected,
                    found=p.found,
                    status=p.status,
                )
                for p in report.planogram.positions
            ],
            unplanned=report.planogram.unplanned,
            score=report.planogram.score,
        ),
        model=report.model,
        detector=report.detector,
    )
