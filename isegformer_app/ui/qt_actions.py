"""Making a menu action of the window: text, slot, its shortcut from the settings."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


def new_action(parent: QWidget, shortcuts: dict[str, str], text: str, slot: Callable[[], object],
               shortcut_key: str = "", tip: str = "") -> QAction:  # fmt: skip
    """A QAction of ``parent`` that calls ``slot()``, with the key bound to ``shortcut_key`` in
    ``shortcuts`` (the settings); added to ``parent`` too, so that it works with the menus closed."""
    act = QAction(text, parent)
    if shortcut_key:
        act.setShortcut(QKeySequence(shortcuts.get(shortcut_key, "")))
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(lambda checked=False: slot())
    parent.addAction(act)
    return act
