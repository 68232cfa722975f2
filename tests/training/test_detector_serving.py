"""app/detector without torch: preprocessing, decoding, NMS, loading errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.detector.decode import decode, nms, postprocess, pyramid_points
from app.detector.preprocess import DetectorPreprocess, prepare
from app.detector.product_detector import Detection, DetectorLoadError, ProductDetector
from tests.support.paths import REPO


def test_points_sit_at_cell_centres_finest_level_first() -> None:
    centres, strides = pyramid_points(16, 32, (8, 16))
    assert centres.shape == (8 + 2, 2)
    assert centres[0].tolist() == [4, 4] and centres[4].tolist() == [4, 12]
    assert centres[8].tolist() == [8, 8] and strides.tolist() == [8] * 8 + [16] * 2


def test_decode_turns_edge_distances_into_boxes() -> None:
    logits = np.full((4, 2), -10.0, np.float32)
    logits[3] = [10.0, 10.0]  # the bottom-right point of a 16 x 16 input at stride 8
    regression = np.zeros((4, 4), np.float32)
    regression[3] = [0.5, 1.0, 1.5, 0.25]
    boxes, scores = decode(logits, regression, (16, 16), (8,), 0.5)
    assert boxes.tolist() == [[8.0, 4.0, 24.0, 14.0]]
    assert scores[0] == pytest.approx(1.0, abs=1e-4)


def test_nms_keeps_the_best_of_overlapping_boxes_and_the_limit() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.4], np.float32)
    assert nms(boxes, scores, 0.5, 10).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.5, 2).tolist() == [1, 2]


def test_postprocess_maps_boxes_onto_the_photo_and_clips_them() -> None:
    logits = np.full((4, 2), 10.0, np.float32)
    regression = np.ones((4, 4), np.float32)
    boxes, _ = postprocess(logits, regression, (16, 16), (8,), (0.5, 0.5), (30, 30), 0.5, 0.5, 9)
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 30 and boxes[:, [1, 3]].max() <= 30


def test_prepare_scales_the_long_side_and_pads_to_the_stride(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (3024, 4032, 3), dtype=np.uint8))
    photo.save(tmp_path / "shelf.jpg", quality=80)
    cfg = DetectorPreprocess(long_side=1024, pad_multiple=64)
    with Image.open(tmp_path / "shelf.jpg") as image:
        prepared = prepare(image, cfg)
        assert image.size == (2016, 1512)  # decoded at half scale by the JPEG draft
    assert prepared.pixels.shape == (3, 768, 1024) and prepared.pixels.dtype == np.float32
    assert prepared.photo_size == (4032, 3024)
    assert prepared.scale == pytest.approx((1024 / 4032, 768 / 3024))
    small = prepare(Image.new("RGB", (100, 50), (128, 128, 128)), cfg)  # never upscaled
    assert small.pixels.shape == (3, 64, 128) and small.scale == (1.0, 1.0)
    assert np.abs(small.pixels).max() < 0.01  # mid-grey and the padding are both about zero


def test_the_serving_package_does_not_import_torch() -> None:
    code = (
        "import sys, app.detector.product_detector, app.detector.decode; "
        "sys.exit(any(m.split('.')[0] in ('torch', 'torchvision', 'timm') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_load_refuses_a_missing_file_and_a_graph_without_detector_metadata(
    tmp_path: Path,
) -> None:
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(DetectorLoadError, match="not found"):
        ProductDetector.load(tmp_path / "absent.onnx")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "x.onnx"
    )
    with pytest.raises(DetectorLoadError, match="not a detector"):
        ProductDetector.load(tmp_path / "x.onnx")


def test_detections_are_frozen() -> None:
    found = Detection((1, 2, 3, 4), 0.5)
    with pytest.raises(AttributeError):
        found.score = 0.9  # type: ignore[misc]
