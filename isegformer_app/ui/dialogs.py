"""Dialog helpers of the main window: recent files, export with progress, unsaved-work prompt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QProgressDialog

from isegformer_app.state.autosave import SidecarError

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow


def fill_recent_menu(window: MainWindow) -> None:
    menu = window.recent_menu
    menu.clear()
    for path in window.settings.recent_files:
        menu.addAction(path, lambda p=path: window.open_path(p))
    menu.setEnabled(bool(window.settings.recent_files))


def export_to(window: MainWindow, out_dir: str | Path, all_images: bool = True) -> int:
    """Export with a modal progress dialog; returns the number of images written (0 on failure)."""
    if window.project is None:
        window.inform("Export", "Open an image first.", error=True)
        return 0
    progress = QProgressDialog("Exporting…", "Cancel", 0, len(window.project.paths), window)
    progress.setWindowTitle("Export")
    progress.setWindowModality(Qt.WindowModality.WindowModal)
    progress.setMinimumDuration(300)

    def report(done: int, total: int, name: str) -> bool:
        progress.setMaximum(total)
        progress.setValue(done)
        progress.setLabelText(f"Exporting {name}…" if name else "Writing labels…")
        QApplication.processEvents()
        return not progress.wasCanceled()

    try:
        count = window.project.export(Path(out_dir), window.labels, report, all_images=all_images)
    except (ValueError, OSError, SidecarError) as exc:
        progress.close()
        window.inform("Export", f"Export failed: {exc}", error=True)
        return 0
    progress.close()
    window.inform("Export", f"Exported {count} image(s) to {out_dir}.")
    return count


def export_with_dialog(window: MainWindow, all_images: bool = True) -> None:
    out = QFileDialog.getExistingDirectory(window, "Export annotations to folder")
    if out:
        export_to(window, out, all_images)


def confirm_close(window: MainWindow) -> bool:
    """Ask what to do with unsaved changes; True if the window may close."""
    doc = window.doc
    extra = f" ({len(doc.clicks)} clicks of an unfinished object)" if doc and doc.clicks else ""
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)  # fmt: skip
    answer = QMessageBox.question(
        window, "Unsaved annotations",
        f"The annotations of {doc.path.name if doc else 'this image'} have unsaved changes{extra}.\n"
        "Save them before closing?",
        buttons,
        QMessageBox.StandardButton.Save,
    )  # fmt: skip
    if answer == QMessageBox.StandardButton.Save:
        return window.save_now()
    return answer == QMessageBox.StandardButton.Discard
