"""Dialog helpers of the main window: recent files, unsaved work, export folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from isegformer_app.state.annotation import AnnotationDocument


def fill_recent_menu(menu: QMenu, recent: list[str], open_path: Callable[[str], object]) -> None:
    """List the ``recent`` files and folders in ``menu``; choosing one calls ``open_path(path)``."""
    menu.clear()
    for path in recent:
        menu.addAction(path, lambda p=path: open_path(p))
    menu.setEnabled(bool(recent))


def ask_unsaved(parent: QWidget, doc: AnnotationDocument | None) -> str:
    """Ask what to do with the unsaved changes of ``doc``: "save", "discard" or "cancel"."""
    n = len(doc.clicks) if doc else 0
    extra = f" ({n} {'click' if n == 1 else 'clicks'} of an unfinished object)" if n else ""
    buttons = (QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
               | QMessageBox.StandardButton.Cancel)  # fmt: skip
    answer = QMessageBox.question(
        parent, "Unsaved annotations",
        f"The annotations of {doc.path.name if doc else 'this image'} have unsaved changes{extra}.\n"
        "Save them before closing?",
        buttons,
        QMessageBox.StandardButton.Save,
    )  # fmt: skip
    if answer == QMessageBox.StandardButton.Save:
        return "save"
    return "discard" if answer == QMessageBox.StandardButton.Discard else "cancel"


class FolderDialog(QFileDialog):
    """Choose a folder to write into; a folder that does not exist yet is created (as other tools
    do) instead of being refused with "Directory not found"."""

    def __init__(self, parent: QWidget | None, title: str, start: str) -> None:
        super().__init__(parent, title, start)
        self.setFileMode(QFileDialog.FileMode.Directory)
        self.setOption(QFileDialog.Option.ShowDirsOnly)
        self.setOption(QFileDialog.Option.DontUseNativeDialog)  # a native one refuses new names itself

    def accept(self) -> None:
        chosen = self.selectedFiles()
        if chosen and not Path(chosen[0]).exists():
            try:
                Path(chosen[0]).mkdir(parents=True)
            except OSError as exc:
                why = exc.strerror or exc
                QMessageBox.warning(self, self.windowTitle(), f"Cannot create {chosen[0]}: {why}")
                return
        super().accept()


def ask_folder(parent: QWidget | None, title: str, start: str) -> str:
    """A folder to export into ("" if cancelled), starting in ``start``; a new name is created."""
    dialog = FolderDialog(parent, title, start)
    return dialog.selectedFiles()[0] if dialog.exec() and dialog.selectedFiles() else ""
