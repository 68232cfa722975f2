"""The serving pipeline travels in the checkpoint: framing, pooling, mirror view, reference views;
old checkpoints keep their behaviour; padding keeps the whole product; WiSE-FT and the shelf
augmentations do what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.encoder.backbones import GeM, TowerConfig, load_offline_backbone
from app.encoder.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from app.encoder.identity import offline_preprocess
from app.encoder.model_spec import BUILTIN_CHECKPOINTS
from app.encoder.preprocess import PreprocessConfig, eval_transform, pad_to_square
from app.encoder.torch_encoder import load_encoder, override_pipeline
from training.augment import make_train_transform
from training.loop import interpolate_weights

PIPELINE = PreprocessConfig(
    image_size=96,
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
    resize_mode="pad",
    pad_fill=255,
    flip=True,
    reference_views=("thumb48", "blur"),
)


def banana(grocery: Path) -> Image.Image:
    return Image.open(sorted((grocery / "test/Fruit/Banana").glob("*.jpg"))[0]).convert("RGB")


def test_checkpoint_round_trips_the_pipeline(tmp_path: Path, grocery: Path) -> None:
    tower, cfg = load_offline_backbone(96, pool="gem")
    path = save_checkpoint(tmp_path / "p.safetensors", tower, cfg, PIPELINE, {})
    cfg2, pre2, _ = read_metadata(path)
    assert cfg2 == cfg and cfg2.pool == "gem" and pre2 == PIPELINE
    loaded, *_ = load_checkpoint(path)
    assert isinstance(loaded.trunk.global_pool, GeM)
    served = load_encoder(str(path), "cpu")
    assert served.preprocess.reference_views == ("thumb48", "blur") and served.preprocess.flip
    # The same weights and pipeline built by hand give the same vectors as the served file.
    by_hand = override_pipeline(
        load_encoder("efficientnet-lite0", "cpu"), resize_mode="pad", pool="gem", flip=True
    )
    by_hand.preprocess = PIPELINE
    image = banana(grocery)
    np.testing.assert_allclose(served.embed([image]), by_hand.embed([image]), atol=1e-5)


def test_old_checkpoints_keep_crop_and_average_pooling() -> None:
    # Metadata written before these keys existed: the behaviour it was trained and served with.
    old = {"image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.875}
    pre = PreprocessConfig.from_dict(old)
    assert (pre.resize_mode, pre.flip, pre.reference_views) == ("crop", False, ())
    tower_cfg = TowerConfig.from_dict({"embed_dim": 1280, "vision_cfg": {"timm_model_name": "x"}})
    assert tower_cfg.pool == "avg"
    cfg, shipped, _ = read_metadata(BUILTIN_CHECKPOINTS["retailklip-lite0-grocery"])
    assert cfg.pool == "avg" and shipped.resize_mode == "crop"


def test_unknown_pipeline_values_are_refused() -> None:
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessConfig(resize_mode="stretch")
    with pytest.raises(RuntimeError, match="pool"):
        TowerConfig(1280, {}, pool="max")


def strip(left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """A 10:1 product: coloured ends, a red middle, on a mid-grey background row."""
    image = Image.new("RGB", (400, 40), (200, 0, 0))
    image.paste(left, (0, 0, 40, 40))
    image.paste(right, (360, 0, 400, 40))
    return image


def colours_seen(tensor: torch.Tensor) -> set[str]:
    pixels = ((tensor * 0.5 + 0.5) * 255).round().permute(1, 2, 0).reshape(-1, 3)
    seen = set()
    if ((pixels[:, 2] > 180) & (pixels[:, 0] < 60) & (pixels[:, 1] < 60)).any():
        seen.add("blue")
    if ((pixels[:, 1] > 180) & (pixels[:, 0] < 60) & (pixels[:, 2] < 60)).any():
        seen.add("green")
    return seen


def test_padding_keeps_an_extreme_aspect_ratio_whole() -> None:
    image = strip((0, 0, 255), (0, 255, 0))
    padded = eval_transform(PIPELINE)(image)
    cropped = eval_transform(PreprocessConfig(image_size=96, resize_mode="crop"))(image)
    assert colours_seen(padded) == {"blue", "green"}  # both ends of the product are in view
    assert colours_seen(cropped) == set()  # the centre crop cut both ends off
    square = pad_to_square(image)
    assert square.size == (400, 400) and square.getpixel((0, 0)) == (255, 255, 255)


def test_mirror_view_is_symmetric(grocery: Path) -> None:
    encoder = override_pipeline(load_encoder("efficientnet-lite0", "cpu"), flip=True)
    image = banana(grocery)
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    np.testing.assert_allclose(encoder.embed([image]), encoder.embed([mirrored]), atol=1e-4)
    plain = override_pipeline(encoder, flip=False)
    assert (plain.embed([image]) @ plain.embed([mirrored]).T).item() < 0.9999


def test_wise_ft_interpolates_weights_not_counters() -> None:
    start, _ = load_offline_backbone(64)
    tuned, _ = load_offline_backbone(64)
    with torch.no_grad():
        for value in tuned.state_dict().values():
            if value.is_floating_point():
                value.add_(1.0)
            else:
                value.add_(7)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    interpolate_weights(tuned, start, 0.25)
    for name, value in tuned.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, before[name] - 0.75)
        else:
            assert torch.equal(value, before[name])
    with pytest.raises(ValueError, match="interpolate"):
        interpolate_weights(tuned, start, 1.5)


def test_shelf_augmentation_degrades_but_keeps_the_layout(grocery: Path) -> None:
    torch.manual_seed(0)
    pre = offline_preprocess(96)
    transform = make_train_transform(
        PreprocessConfig(**{**pre.to_dict(), "resize_mode": "pad"}), "shelf"
    )
    image = banana(grocery)
    views = torch.stack([transform(image) for _ in range(16)])
    assert views.shape == (16, 3, 96, 96)
    assert views.std(dim=0).mean() > 0.1  # the draws differ
    with pytest.raises(ValueError, match="augment"):
        make_train_transform(pre, "cartoon")
