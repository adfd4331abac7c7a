"""Bundled data: icons, the sample photo and colour tables (``importlib.resources``-friendly paths)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
SAMPLE_IMAGE = ROOT / "samples" / "sample.jpg"
APP_ICON = ROOT / "icons" / "isegformer.png"
# The trained network the app and ``isegformer-eval`` use by default (model card: models/MODEL_CARD.md).
DEFAULT_MODEL_NAME = "isegformer-lite0"
DEFAULT_MODEL = ROOT / "models" / "isegformer_lite0.pth"


def bundled_model() -> Path | None:
    """The bundled default network's checkpoint, or None when this installation has none."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None
