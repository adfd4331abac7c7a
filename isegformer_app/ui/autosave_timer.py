"""When the shown document is autosaved: a while after its first unsaved change (its dirty events)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.events import DirtyChanged


class AutosaveTimer(QObject):
    """Calls ``save()`` ``delay_ms`` after the followed document got an unsaved change; it listens to
    :class:`DirtyChanged` only. The timer is not restarted by later changes: however busy the user keeps
    clicking, the autosave comes at most ``delay_ms`` after the first unsaved one."""

    def __init__(self, parent: QObject, delay_ms: int, save: Callable[[], None]) -> None:
        super().__init__(parent)
        self.timer = QTimer(self, singleShot=True, interval=delay_ms)
        self.timer.timeout.connect(save)
        self.doc: AnnotationDocument | None = None

    def follow(self, doc: AnnotationDocument | None) -> None:
        """Schedule the autosaves of ``doc`` from now on (None: of nothing)."""
        if self.doc is not None:
            self.doc.events.dirty.disconnect(self._on_dirty)
        self.doc = doc
        if doc is not None:
            doc.events.dirty.connect(self._on_dirty)
            if doc.dirty:
                self._on_dirty(DirtyChanged(True))

    def _on_dirty(self, event: DirtyChanged) -> None:
        if event.dirty and not self.timer.isActive():
            self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
