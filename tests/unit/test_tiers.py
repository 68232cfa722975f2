"""Verdict tiers: the rule, the checkpoint metadata they travel in, the settings that override
them, and their calibration (training/tiers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from app.encoder.backbones import load_offline_backbone
from app.encoder.checkpoint import load_checkpoint, save_checkpoint, write_tiers
from app.encoder.identity import checkpoint_model_id, model_tiers, offline_preprocess
from app.recognition.tiers import Tiers, served_tiers, tier_of
from training.tiers import MIN_CONFIDENT, Scored, calibrate, tier_table

TIERS = Tiers(confident_score=0.8, confident_margin=0.1, precision=0.99, coverage=0.5)


@pytest.mark.parametrize(
    ("top", "second", "unknown", "tier"),
    [
        (None, None, True, "unknown"),
        (0.95, 0.5, True, "unknown"),  # under the request's min_score: unknown wins
        (0.95, 0.5, False, "confident"),
        (0.95, 0.9, False, "ambiguous"),  # the runner-up is too close
        (0.75, 0.1, False, "ambiguous"),  # the score is too low
        (0.85, None, False, "confident"),  # one product only: no runner-up
        (0.8, 0.7, False, "confident"),  # both thresholds are inclusive
    ],
)
def test_the_tier_comes_from_the_score_and_the_margin(
    top: float | None, second: float | None, unknown: bool, tier: str
) -> None:
    assert tier_of(top, second, unknown, TIERS) == tier


def test_without_calibration_nothing_is_confident() -> None:
    assert tier_of(0.99, -1.0, False, None) == "ambiguous"
    assert tier_of(0.99, -1.0, True, None) == "unknown"


def test_tiers_round_trip_the_checkpoint_metadata(tmp_path: Path) -> None:
    tower, cfg = load_offline_backbone()
    path = save_checkpoint(tmp_path / "m.safetensors", tower, cfg, offline_preprocess(), {"a": 1})
    assert model_tiers(str(path)) is None
    before_id, tensors = checkpoint_model_id(path), load_file(str(path))
    write_tiers(path, TIERS.to_json())
    assert Tiers.from_json(model_tiers(str(path)) or "") == TIERS
    # Same weights and pipeline, a new file: a new model id (its vectors are re-made on reindex).
    after = load_file(str(path))
    assert tensors.keys() == after.keys()
    assert all(np.array_equal(tensors[k], after[k]) for k in tensors)
    assert checkpoint_model_id(path) != before_id
    _, cfg2, pre2, info = load_checkpoint(path)
    assert (cfg2, pre2, info) == (cfg, offline_preprocess(), {"a": 1})
    saved = save_checkpoint(
        tmp_path / "n.safetensors", tower, cfg, offline_preprocess(), tiers=TIERS.to_json()
    )
    assert Tiers.from_json(model_tiers(str(saved)) or "") == TIERS


def test_the_shipped_default_model_carries_calibrated_tiers() -> None:
    text = model_tiers("retailklip-lite0-shelf")
    assert text is not None
    tiers = Tiers.from_json(text)
    assert tiers.calibrated_on == "grocery-store val"
    assert tiers.precision is not None and tiers.precision >= 0.95


def test_settings_override_each_threshold() -> None:
    assert served_tiers(None, None, None) is None
    assert served_tiers(None, 0.9, None) is None  # no margin from anywhere
    assert served_tiers(TIERS, None, None) == TIERS
    assert served_tiers(TIERS, None, 0.2) == Tiers(0.8, 0.2, calibrated_on="settings")
    assert served_tiers(None, 0.7, 0.05) == Tiers(0.7, 0.05, calibrated_on="settings")


def test_calibration_covers_most_while_keeping_the_precision() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    top = rng.uniform(0.5, 1.0, n)
    margin = rng.uniform(0.0, 0.4, n)
    # Right more often the higher the score and the wider the margin.
    correct = rng.uniform(size=n) < np.clip(0.3 + 0.5 * (top - 0.5) + 1.5 * margin, 0, 1)
    data = Scored(top, top - margin, correct)
    tiers = calibrate(data, 0.5, 0.95, "synthetic")
    chosen = (top >= tiers.confident_score) & (data.margin >= tiers.confident_margin)
    assert chosen.sum() >= MIN_CONFIDENT and correct[chosen].mean() >= 0.95
    assert tiers.precision == pytest.approx(correct[chosen].mean(), abs=1e-4)
    assert tiers.coverage == pytest.approx(chosen.mean(), abs=1e-4)
    stricter = calibrate(data, 0.5, 0.99, "synthetic")
    assert stricter.coverage is not None and stricter.coverage < tiers.coverage
    rows = {row[0]: row for row in tier_table(data, 0.5, tiers)}
    assert rows["confident"][2] == f"{correct[chosen].mean():.1%}"
    with pytest.raises(SystemExit):
        calibrate(Scored(top, top - margin, np.zeros(n, bool)), 0.5, 0.9, "never right")
