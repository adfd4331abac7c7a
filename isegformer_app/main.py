"""``isegformer [PATH]``: open the annotation window on an image, a folder of images or a volume.

A ``.nii``/``.nii.gz`` file or a folder without images (a DICOM series, a BraTS case) opens as a volume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from resources import APP_ICON


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isegformer", description="Click-based interactive segmentation.")
    parser.add_argument("path", nargs="?", help="an image, an image folder, a NIfTI file or a DICOM folder")
    parser.add_argument("--checkpoint", help="load this model checkpoint (original iSegFormer/RITM format)")
    parser.add_argument("--engine", help="built-in engine to start with")
    parser.add_argument("--config-dir", type=Path, help="settings folder (default: the user config folder)")
    return parser.parse_args(argv)


def import_with_splash(app) -> None:
    """Import the inference stack (torch, timm, the model modules, Pillow's plugins) on this thread before
    the window shows, a splash screen painted meanwhile: imported in a background thread instead, torch
    and timm hold the interpreter for up to ~0.5 s at a time (shared libraries, operator registration)
    and the shown window stalls; imported lazily, the first image or click waits on them."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QSplashScreen

    from isegformer_app.ui.model_control import preload_inference_stack

    pixmap = QPixmap(str(APP_ICON)) if APP_ICON.is_file() else QPixmap()
    if pixmap.isNull():
        pixmap = QPixmap(320, 120)
        pixmap.fill(Qt.GlobalColor.darkGray)
    splash = QSplashScreen(pixmap.scaledToHeight(160) if pixmap.height() > 160 else pixmap)
    splash.show()
    bottom = Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter
    splash.showMessage("Loading the segmentation models…", bottom)
    app.processEvents()
    preload_inference_stack(between=app.processEvents)
    splash.close()


def build_window(app, config_dir: Path | None = None, engine: str | None = None,
                 sidecar_dir: Path | None = None):  # fmt: skip
    """The main window with the user's settings (``engine``: start with this built-in engine), not shown."""
    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow

    app.setApplicationName("isegformer")
    if APP_ICON.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(APP_ICON)))
    import_with_splash(app)
    settings = Settings.load(config_dir)
    if engine:
        settings.engine = engine
        settings.model_source = "engine"
    return MainWindow(settings, sidecar_dir=sidecar_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; returns the exit code of the Qt event loop."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = build_window(app, args.config_dir, args.engine)
    window.show()
    if args.path:
        window.open_path(args.path)
    if args.checkpoint:
        window.models.load_checkpoint(args.checkpoint)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
