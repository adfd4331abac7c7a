"""Typed events of an annotation document and the small Qt-free emitter that delivers them.

As napari's ``layer.events``: a document has one :class:`EventEmitter` per kind of change
(``doc.events.clicks``, ``doc.events.objects``...); widgets and the autosave scheduler subscribe to the
kinds they show or act on, so a prediction redraws the overlay without rebuilding the objects panel.
Callbacks run synchronously, in the order they were connected, in the thread that changed the document
(the GUI thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass(frozen=True)
class ClicksChanged:
    """The current object's clicks or brush corrections changed (added, undone, reset, propagated); the
    current mask follows once a prediction for the new clicks is there (at once when it is cached)."""


@dataclass(frozen=True)
class PredictionChanged:
    """A prediction for the current clicks arrived: the current mask changed, the objects did not."""


@dataclass(frozen=True)
class ObjectsChanged:
    """Finished objects changed: added, finished, deleted, reordered, renamed, recoloured, shown/hidden,
    painted, or the image's mark "done: no objects"."""


@dataclass(frozen=True)
class SelectionChanged:
    """Another finished object (or none: ``uid`` None) is selected."""

    uid: int | None


@dataclass(frozen=True)
class ViewChanged:
    """The plane shown changed (a volume's view axis or slice, or the object that clicks edit)."""


@dataclass(frozen=True)
class ThresholdChanged:
    """The document's probability threshold is now ``threshold``."""

    threshold: float


@dataclass(frozen=True)
class DirtyChanged:
    """The document has a new unsaved revision (``dirty``), or its autosave was written (``dirty`` False
    unless it changed again meanwhile). Emitted on every revision, so an autosave scheduler needs no other
    event."""

    dirty: bool


class EventEmitter(Generic[E]):
    """Subscribers of one kind of event: ``connect(callback)``, ``emit(event)`` calls each in order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[E], object]] = []

    def connect(self, callback: Callable[[E], object]) -> None:
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def disconnect(self, callback: Callable[[E], object]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, event: E) -> None:
        for callback in list(self._callbacks):  # a callback may disconnect itself
            callback(event)

    def __len__(self) -> int:
        return len(self._callbacks)

    def clear(self) -> None:
        self._callbacks.clear()


class DocumentEvents:
    """The emitters of one document, one per event type."""

    def __init__(self) -> None:
        self.clicks: EventEmitter[ClicksChanged] = EventEmitter()
        self.prediction: EventEmitter[PredictionChanged] = EventEmitter()
        self.objects: EventEmitter[ObjectsChanged] = EventEmitter()
        self.selection: EventEmitter[SelectionChanged] = EventEmitter()
        self.view: EventEmitter[ViewChanged] = EventEmitter()
        self.threshold: EventEmitter[ThresholdChanged] = EventEmitter()
        self.dirty: EventEmitter[DirtyChanged] = EventEmitter()

        self._by_type: dict[type, EventEmitter] = {
            ClicksChanged: self.clicks, PredictionChanged: self.prediction, ObjectsChanged: self.objects,
            SelectionChanged: self.selection, ViewChanged: self.view, ThresholdChanged: self.threshold,
            DirtyChanged: self.dirty,
        }  # fmt: skip

    def emitters(self) -> list[EventEmitter]:
        """One emitter per event type."""
        return list(self._by_type.values())

    def emit(self, event: object) -> None:
        """Deliver ``event`` to the subscribers of its type."""
        self._by_type[type(event)].emit(event)

    def disconnect_all(self) -> None:
        """Nobody listens any more (the document is closed)."""
        for emitter in self.emitters():
            emitter.clear()
