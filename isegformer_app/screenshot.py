"""Regenerate the README screenshot: the window on the bundled sample with one finished object.

    QT_QPA_PLATFORM=offscreen python -m isegformer_app.screenshot [--out resources/screenshots/window.png]

Clicks are real mouse clicks on the canvas (left = object, right = background), with the default
engine; the object is finished as "person" with Space. Autosaves go to a temporary user-data folder,
so the clone stays clean.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# (y, x, positive) in image pixels: the man on the right; negatives on the tray, the chair, the window
# and the bowl (written for the classical engine, which floods the cluttered scene without them; the
# photo default is the network since 2026-12-04).
FINISHED = [(200.0, 435.0, True), (130.0, 430.0, True), (270.0, 400.0, False), (200.0, 340.0, False),
            (60.0, 400.0, False), (250.0, 435.0, False)]


def _wait(app, condition, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("resources/screenshots/window.png"))
    parser.add_argument("--size", default="1280x820", help="window size WxH")
    args = parser.parse_args(argv)
    os.environ.setdefault("ISEGFORMER_DATA_DIR", tempfile.mkdtemp(prefix="isegformer-shot-"))

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow
    from resources import SAMPLE_IMAGE

    app = QApplication.instance() or QApplication(sys.argv[:1])
    config = Path(os.environ["ISEGFORMER_DATA_DIR"]) / "config"
    window = MainWindow(Settings.load(config))
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    _wait(app, lambda: window.models.active[0] != "")
    if not window.open_path(SAMPLE_IMAGE):
        return 1
    window.images.wait_for_load()
    window.labels_panel.list.setCurrentRow(window.labels.names().index("person"))
    viewport = window.canvas.viewport()
    for y, x, positive in FINISHED:
        button = Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton
        QTest.mouseClick(viewport, button, Qt.KeyboardModifier.NoModifier, window.canvas.image_to_view(y, x))
        _wait(app, lambda: window.doc.prob is not None and not window.doc.needs_prediction())
    QTest.keyClick(window, Qt.Key.Key_Space)
    _wait(app, lambda: len(window.doc.objects) == 1)
    window.doc.selected_uid = window.doc.objects[0].uid
    window.objects_panel.refresh()
    for _ in range(20):
        app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(args.out)):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({width}x{height})")
    window.doc.saved_revision = window.doc.revision  # nothing to ask about on close
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
