"""Dialog helpers of the main window: recent files, export in the background with progress, unsaved work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from isegformer_app.state.export import ExportSummary, export_target_kind, exported_stems
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


def export_to(window: MainWindow, out_dir: str | Path, all_images: bool = True,
              overwrite: bool | None = None) -> BackgroundTask | None:  # fmt: skip
    """Export in a background thread with a progress dialog (Cancel leaves the folder as it was).

    Runs the project's tested :class:`~isegformer_app.state.export.ExportPlan`. A folder that holds an
    earlier export is replaced (or, for one image, updated) only after the user agrees (``overwrite``
    None = ask); a non-empty folder that is not an export is refused. Returns the running task
    (``task.result``: an :class:`ExportSummary`), None if nothing was started.
    """
    project = window.project
    if project is None or project.doc is None:
        window.inform("Export", "Open an image first.", error=True)
        return None
    out = Path(out_dir)
    kind = export_target_kind(out)
    if kind == "other":
        window.inform("Export", f"{out} is not empty and holds no isegformer export. Choose an empty "
                                "folder, or an earlier export to replace.", error=True)  # fmt: skip
        return None
    if kind == "export" and overwrite is None:
        overwrite = _confirm_overwrite(window, out, all_images, project.doc.path.stem)
        if not overwrite:
            return None
    plan = project.export_plan(all_images)  # the open image is copied now, on the GUI thread
    labels = LabelList([LabelClass(c.name, c.color) for c in window.labels.classes])

    def work(report, cancel) -> ExportSummary:
        def progress(done: float, total: int, name: str) -> bool:
            report(done / max(total, 1), f"{name}" if name else "writing labels")
            return not cancel.is_set()

        return plan.run(out, labels, progress, overwrite=bool(overwrite))

    def done(task: BackgroundTask) -> None:
        for cls in labels.classes:  # classes met during the export join the label list
            window.labels.ensure(cls.name, cls.color)
        if task.error is not None:
            window.inform("Export", f"Export failed ({out} was left as it was): {task.error}", error=True)
        elif task.cancelled or task.result is None:
            window.inform("Export", f"Export cancelled; {out} was left as it was.")
        else:
            summary = task.result
            skipped = ", ".join(summary.skipped)
            skipped = f"; skipped {len(summary.skipped)}: {skipped}" if skipped else ""
            window.inform("Export", f"Exported {summary.exported} image(s) to {out}{skipped}.")

    return run_task(window, "Export", work, done)


def _confirm_overwrite(window: MainWindow, out: Path, all_images: bool, stem: str) -> bool:
    earlier = exported_stems(out)
    if all_images:
        text = (f"{out} holds an earlier export ({len(earlier)} image(s)).\n"
                "Replace it with the annotations of this folder?")  # fmt: skip
    elif stem in earlier:
        text = f"The export in {out} already holds {stem}. Replace that image's annotations?"
    else:
        return True  # adding an image to an export changes nothing that is there
    answer = QMessageBox.question(window, "Export", text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                  QMessageBox.StandardButton.Cancel)  # fmt: skip
    return answer == QMessageBox.StandardButton.Yes


def export_with_dialog(window: MainWindow, all_images: bool = True) -> None:
    if window.project is None or window.project.doc is None:
        window.inform("Export", "Open an image or a folder first.", error=True)
        return
    out = QFileDialog.getExistingDirectory(window, "Export annotations to folder",
                                           str(window.project.doc.path.parent))  # fmt: skip
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
