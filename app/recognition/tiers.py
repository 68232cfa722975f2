"""Verdict tiers: how sure an answer is, from the top product's score and its margin over the
runner-up.

- `unknown`: no match, or the best score is under the request's unknown threshold (`min_score`,
  default `RETAILKLIP_UNKNOWN_THRESHOLD`): the meaning `unknown: true` has always had.
- `confident`: known, the best score is at least `confident_score` and it leads the second
  product by at least `confident_margin`. Calibrated per model so that this tier is right about
  as often as the calibration promised (`precision` below), on data the model may learn from
  (`retailklip-train calibrate-tiers`: the Grocery Store val split).
- `ambiguous`: everything else known; a person should look.

A model without calibrated tiers (and without the settings that override them) never answers
`confident`: it cannot promise anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

TierName = Literal["confident", "ambiguous", "unknown"]


@dataclass(frozen=True)
class Tiers:
    confident_score: float
    confident_margin: float
    # What the calibration measured, for the record (model card, /readyz).
    precision: float | None = None  # top-1 precision of the confident tier on `calibrated_on`
    coverage: float | None = None  # share of those queries in it
    calibrated_on: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> Tiers:
        data = json.loads(text)
        return cls(
            confident_score=float(data["confident_score"]),
            confident_margin=float(data["confident_margin"]),
            precision=data.get("precision"),
            coverage=data.get("coverage"),
            calibrated_on=data.get("calibrated_on"),
        )


def served_tiers(
    calibrated: Tiers | None, score: float | None, margin: float | None
) -> Tiers | None:
    """The model's calibrated tiers with the settings' overrides (CONFIDENT_SCORE / _MARGIN);
    None when either threshold is known from neither."""
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


def tier_of(
    top: float | None, second: float | None, unknown: bool, tiers: Tiers | None
) -> TierName:
    """`top`, `second`: the best two products' scores (None where there is none)."""
    if unknown or top is None:
        return "unknown"
    if tiers is None:
        return "ambiguous"
    margin = top - (second if second is not None else -1.0)
    if top >= tiers.confident_score and margin >= tiers.confident_margin:
        return "confident"
    return "ambiguous"
