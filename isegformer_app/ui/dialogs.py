"""Dialog helpers of the main window: recent files, export in the background with progress, unsaved work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from isegformer_app.state.export import ExportItem, ExportObject, export_items, item_from_sidecar
from isegformer_app.state.labels import LabelClass, LabelList
from isegformer_app.ui.tasks import BackgroundTask, run_task

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow


def fill_recent_menu(window: MainWindow) -> None:
    menu = window.recent_menu
    menu.clear()
    for path in window.settings.recent_files:
        menu.addAction(path, lambda p=path: window.open_path(p))
    menu.setEnabled(bool(window.settings.recent_files))


def export_to(window: MainWindow, out_dir: str | Path, all_images: bool = True) -> BackgroundTask | None:
    """Export in a background thread with a progress dialog (Cancel stops after the current image).

    Returns the running task (``task.result``: number of images written), None if nothing is open.
    """
    project = window.project
    if project is None or project.doc is None:
        window.inform("Export", "Open an image first.", error=True)
        return None
    doc = project.doc
    open_item = ExportItem(doc.path, doc.image.full_size,
                           [ExportObject(o.label, o.color, o.mask.copy()) for o in doc.objects],
                           doc.image.exif_rotated)  # fmt: skip
    paths = list(project.paths) if all_images else [doc.path]
    labels = LabelList([LabelClass(c.name, c.color) for c in window.labels.classes])
    sidecar_for, out = project.sidecar_for, Path(out_dir)

    def work(report, cancel) -> int:
        items = []
        for path in paths:
            item = open_item if path == doc.path else (
                item_from_sidecar(path, sidecar_for(path)) if sidecar_for(path).is_file() else None)
            if item is not None and item.objects:
                items.append(item)
        if not items:
            raise ValueError("Nothing to export: no image has a finished object yet.")

        def progress(done: float, total: int, name: str) -> bool:
            report(done / max(total, 1), f"{name}" if name else "writing labels")
            return not cancel.is_set()

        return export_items(items, out, labels, progress)

    def done(task: BackgroundTask) -> None:
        for cls in labels.classes:  # classes met during the export join the label list
            window.labels.ensure(cls.name, cls.color)
        if task.error is not None:
            window.inform("Export", f"Export failed: {task.error}", error=True)
        else:
            stopped = " (cancelled)" if task.cancelled else ""
            window.inform("Export", f"Exported {task.result or 0} image(s) to {out_dir}{stopped}.")

    return run_task(window, "Export", work, done)


def export_with_dialog(window: MainWindow, all_images: bool = True) -> None:
    out = QFileDialog.getExistingDirectory(window, "Export annotations to folder")
    if out:
        export_to(window, out, all_images)


def ask_unsaved(window: MainWindow) -> str:
    """Ask what to do with unsaved changes: "save", "discard" or "cancel"."""
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
        return "save"
    return "discard" if answer == QMessageBox.StandardButton.Discard else "cancel"


def confirm_close(window: MainWindow) -> bool:
    """Ask what to do with unsaved changes; True if the window may close."""
    answer = ask_unsaved(window)
    if answer == "save":
        return window.save_now()
    return answer == "discard"
