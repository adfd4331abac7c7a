"""The status bar's message: one line that fits (cut with "…"), the whole text in a tooltip."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """A one-line label that never asks for more room than it gets: the first line of its text is shown
    cut to the width with "…", the whole text (all lines) is the tooltip. :meth:`text` is that first
    line; :meth:`shown_text` what is on screen."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._line = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        lines = text.splitlines()
        self._line = lines[0] if lines else ""
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        return self._line

    def shown_text(self) -> str:
        return QLabel.text(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(0, super().sizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        QLabel.setText(self, self.fontMetrics().elidedText(self._line, Qt.TextElideMode.ElideRight, width))


def separator() -> QFrame:
    """A thin vertical line between two status bar fields."""
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line
