"""Which detector graph a service serves (RETAILKLIP_DETECTOR): `auto` is the one that ships
in app/models/ when it is there, `off` none, anything else a path to a graph that
`retailklip export-detector` wrote."""

from __future__ import annotations

from pathlib import Path

from app.detector.product_detector import DetectorLoadError, ProductDetector

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "retailklip-detector-lite0.onnx"


def detector_graph(setting: str) -> Path | None:
    if setting == "off":
        return None
    if setting == "auto":
        return SHIPPED if SHIPPED.is_file() else None
    return Path(setting)


def load_detector(setting: str, threads: int) -> ProductDetector | None:
    """The detector the setting names, or None; raises DetectorLoadError for a graph that is
    named but missing or unreadable (a start-up error, not a silent fallback)."""
    path = detector_graph(setting)
    if path is None:
        return None
    if not path.is_file():
        raise DetectorLoadError(f"RETAILKLIP_DETECTOR: no detector graph at {path}")
    return ProductDetector.load(path, threads=threads)
