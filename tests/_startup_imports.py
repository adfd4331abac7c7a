"""Run in a fresh interpreter by test_app_responsiveness: the window with the real engines (grabcut
picked), then navigation over an unreadable file and a first click; prints JSON of what was imported
when, and how long D took."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QApplication, QMessageBox

from isegformer_app.settings import Settings
from isegformer_app.ui.main_window import MainWindow

WATCHED = ("timm", "model.build", "model.checkpoint", "PIL.BmpImagePlugin", "PIL.TiffImagePlugin")


def spin_until(app: QApplication, condition, timeout_s: float = 60.0) -> None:
    start = time.perf_counter()
    while not condition() and time.perf_counter() - start < timeout_s:
        app.processEvents()
        time.sleep(0.001)


def main() -> None:
    app = QApplication([])
    QMessageBox.warning = lambda *a, **k: None  # the skipped file's notice
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b_good.png", "d_good.png"):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / name)
    (folder / "c_text.png").write_text("not an image\n" * 10)
    settings = Settings.load(tmp / "config")
    settings.engine, settings.model_source = "grabcut", "engine"
    window = MainWindow(settings)
    window.show()
    spin_until(app, lambda: window.models.active == ("engine", "grabcut"))
    at_ready = [name for name in WATCHED if name in sys.modules]
    before = set(sys.modules)
    window.open_path(folder)
    window.images.wait_for_load()
    start = time.perf_counter()
    window.next_image()  # skips c_text.png: Pillow tries every plugin on it
    spin_until(app, lambda: window.images.loading is None and window.doc.path.name == "d_good.png")
    d_seconds = time.perf_counter() - start
    window.doc.add_click(60, 80, True)
    window.mode.request_prediction()
    spin_until(app, lambda: window.doc.prob is not None and not window.doc.needs_prediction())
    imported_later = sorted(
        name for name in set(sys.modules) - before if name.startswith(("timm", "model", "PIL"))
    )
    print(
        json.dumps(
            {
                "at_ready": at_ready,
                "imported_later": imported_later,
                "shown": window.doc.path.name,
                "d_seconds": d_seconds,
                "predicted": window.doc.prob is not None,
            }
        )
    )
    window.doc.saved_revision = window.doc.revision
    window.close()


if __name__ == "__main__":
    main()
