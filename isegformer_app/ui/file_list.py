"""The Files dock of image mode: every image of the folder with how far it is annotated; click to open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from isegformer_app.state.image_status import ImageStatus

STATUS_MARK: dict[str, tuple[str, str]] = {  # status -> (mark, colour)
    "new": ("○", "#808080"),
    "in progress": ("◐", "#c08000"),
    "done": ("●", "#2a8a2a"),
    "unreadable": ("✕", "#c03030"),
    "autosave unreadable": ("!", "#c03030"),
}


class FileListPanel(QWidget):
    """``chosen(index)`` when the user picks an image (click, Enter); D/A keep working beside it."""

    chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("file_list")
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the canvas (D/A, Space)
        self.list.itemActivated.connect(self._on_item)
        self.list.itemClicked.connect(self._on_item)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        self.statuses: list[ImageStatus] = []
        self.names: list[str] = []
        self._known: set[int] = set()  # rows whose status was seen after the listing (not a scan's)

    def set_paths(self, paths: list[Path]) -> None:
        self.list.clear()
        self.names = [p.name for p in paths]
        self.statuses = ["new"] * len(paths)
        self._known = set()
        for i, name in enumerate(self.names):
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.list.addItem(item)
            self._paint(i)

    def set_status(self, index: int, status: ImageStatus) -> None:
        """A status seen now (opened, left, found unreadable): a later folder scan never overrides it."""
        if 0 <= index < len(self.statuses):
            self._known.add(index)
            self._set(index, status)

    def fill_status(self, index: int, status: ImageStatus) -> None:
        """A status read by the background folder scan, which started when the folder was listed: it
        fills only rows with nothing newer (an image found unreadable meanwhile stays marked so)."""
        if 0 <= index < len(self.statuses) and index not in self._known:
            self._set(index, status)

    def _set(self, index: int, status: ImageStatus) -> None:
        if self.statuses[index] != status:
            self.statuses[index] = status
            self._paint(index)

    def set_current(self, index: int) -> None:
        self.list.blockSignals(True)
        self.list.setCurrentRow(index)
        self.list.blockSignals(False)
        if 0 <= index < self.list.count():
            self.list.scrollToItem(self.list.item(index))

    def text(self, index: int) -> str:
        return self.list.item(index).text()

    def _paint(self, index: int) -> None:
        mark, colour = STATUS_MARK[self.statuses[index]]
        item = self.list.item(index)
        item.setText(f"{mark} {self.names[index]}")
        item.setForeground(QBrush(QColor(colour)))
        item.setToolTip(f"{self.names[index]}: {self.statuses[index]}")

    def _on_item(self, item: QListWidgetItem) -> None:
        self.chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
