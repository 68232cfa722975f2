"""The exported graph gives the boxes PyTorch gives, through the service's own code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.detector.preprocess import DetectorPreprocess
from app.detector.product_detector import ProductDetector as GraphDetector
from training.detector.export import check_against_torch, export_onnx
from training.detector.inference import torch_detect
from training.detector.model import DetectorConfig, ProductDetector
from training.shelves.dataset import read_folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProductDetector, Path]:
    torch.manual_seed(1)
    model = ProductDetector(DetectorConfig(fpn_channels=32, head_convs=1), pretrained=True).eval()
    # Untrained, every point scores about the same; spread the scores so that NMS has no ties.
    with torch.no_grad():
        model.head.classification_head.cls_logits.weight.mul_(300.0)
        model.head.classification_head.cls_logits.bias.fill_(0.0)
    path = tmp_path_factory.mktemp("graph") / "detector.onnx"
    export_onnx(model, DetectorPreprocess(long_side=256), path, 0.05, "test-detector")
    return model, path


def test_the_graph_gives_the_boxes_pytorch_gives(
    exported: tuple[ProductDetector, Path], rendered: Path
) -> None:
    model, path = exported
    graph = GraphDetector.load(path, threads=1)
    assert graph.model_id == "test-detector"
    for record in read_folder(rendered)[:2]:
        with Image.open(record.image) as image:
            image.load()
            t_boxes, t_scores = torch_detect(
                model, image, graph.metadata.preprocess, torch.device("cpu"), 0.05, 300
            )
            found = graph.detect(image, score_threshold=0.05, max_boxes=300)
        assert len(found) == len(t_boxes) > 0
        o_boxes = np.asarray([d.box for d in found], np.float32)
        assert np.abs(o_boxes - t_boxes).max() <= 0.51  # whole pixels against PyTorch's floats
        assert np.allclose([d.score for d in found], t_scores, atol=1e-3)


def test_the_export_check_catches_a_different_model(
    exported: tuple[ProductDetector, Path],
) -> None:
    model, path = exported
    other = ProductDetector(DetectorConfig(fpn_channels=32, head_convs=1), pretrained=False)
    with pytest.raises(ValueError, match="differ"):
        check_against_torch(other.eval(), DetectorPreprocess(long_side=256), path)
    assert check_against_torch(model, DetectorPreprocess(long_side=256), path) >= 0
