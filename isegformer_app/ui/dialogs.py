"""Dialog helpers of the main window: recent files, unsaved work, export folders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow


def fill_recent_menu(window: MainWindow) -> None:
    menu = window.recent_menu
    menu.clear()
    for path in window.settings.recent_files:
        menu.addAction(path, lambda p=path: window.open_path(p))
    menu.setEnabled(bool(window.settings.recent_files))


def ask_unsaved(window: MainWindow) -> str:
    """Ask what to do with unsaved changes: "save", "discard" or "cancel"."""
    doc = window.doc
    n = len(doc.clicks) if doc else 0
    extra = f" ({n} {'click' if n == 1 else 'clicks'} of an unfinished object)" if n else ""
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
