"""Bundled data: icons, the sample photo and colour tables (``importlib.resources``-friendly paths)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SAMPLE_IMAGE = ROOT / "samples" / "sample.jpg"
APP_ICON = ROOT / "icons" / "isegformer.png"
# The trained network the app and ``isegformer-eval`` use by default (model card: models/MODEL_CARD.md).
DEFAULT_MODEL_NAME = "isegformer-lite0"
DEFAULT_MODEL = ROOT / "models" / "isegformer_lite0.pth"
# Its measured figures and the engine each modality starts with (written by ``training.ship_model``).
MODEL_DEFAULTS = ROOT / "models" / "isegformer_lite0.json"
CLASSICAL_ENGINE = "geo_grabcut"
MODALITIES = ("photo", "volume")


def bundled_model() -> Path | None:
    """The bundled default network's checkpoint, or None when this installation has none."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def modality_defaults(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """Per modality ("photo", "volume"): (engine name, why). The bundled network where its measured figures
    beat the classical engine, else the classical engine; without a bundled network (or a readable
    defaults file) every modality keeps the classical engine."""
    path = MODEL_DEFAULTS if path is None else path
    fallback = "no bundled network" if bundled_model() is None else f"no measured defaults ({path.name})"
    defaults = {m: (CLASSICAL_ENGINE, fallback) for m in MODALITIES}
    if bundled_model() is None:
        return defaults
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["defaults"]
        for modality in MODALITIES:
            entry = data[modality]
            defaults[modality] = (str(entry["engine"]), str(entry["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return defaults
