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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; returns the exit code of the Qt event loop."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtWidgets import QApplication

    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("isegformer")
    if APP_ICON.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(APP_ICON)))
    settings = Settings.load(args.config_dir)
    if args.engine:
        settings.engine = args.engine
        settings.model_source = "engine"
    window = MainWindow(settings)
    window.show()
    if args.path:
        window.open_path(args.path)
    if args.checkpoint:
        window.models.load_checkpoint(args.checkpoint)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
