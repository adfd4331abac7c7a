"""Dialog helpers of the main window: recent files, unsaved work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

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
