"""Bundled data: icons, the sample photo and colour tables (``importlib.resources``-friendly paths)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
SAMPLE_IMAGE = ROOT / "samples" / "sample.jpg"
APP_ICON = ROOT / "icons" / "isegformer.png"
