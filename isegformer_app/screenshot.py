"""Regenerate the README screenshot: the window on the bundled sample with one finished object.

    QT_QPA_PLATFORM=offscreen python -m isegformer_app.screenshot [--out resources/screenshots/window.png]

Clicks go through the same window methods a mouse click reaches (``add_click``), with the default
built-in engine; autosaves go to a temporary user-data folder, so the clone stays clean.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

FINISHED = [(175.0, 250.0, True), (110.0, 245.0, True)]  # (y, x, positive): the man in the middle
IN_PROGRESS = [(160.0, 440.0, True), (250.0, 330.0, False)]  # the man on the right, being annotated


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
    for clicks in (FINISHED, IN_PROGRESS):
        for y, x, positive in clicks:
            window.add_click(y, x, positive)
            _wait(app, lambda: window.doc.prob is not None and not window.doc.needs_prediction())
        if clicks is FINISHED:
            window.finish_object()
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
