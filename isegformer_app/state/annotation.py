"""What every annotation document is (Qt-free): the base of the image and the volume document.

The window, the modes, the canvas and the panels see a document through :class:`AnnotationDocument`
only: the finished objects on the shown plane (:class:`PlaneObject`), the click session of the object
being clicked on, ``execute`` / ``undo`` / ``redo``, typed events (:mod:`.events`), the threshold it owns
and a :class:`~isegformer_app.state.snapshot.Snapshot` of itself for the autosave. An image
(:class:`~isegformer_app.state.document.Document`) has one plane; a volume
(:class:`~isegformer_app.state.volume_document.VolumeDocument`) shows one slice of one view at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from isegformer_app.state import commands as cmd
from isegformer_app.state.click_session import ClickSession
from isegformer_app.state.disk_version import SidecarVersion
from isegformer_app.state.events import DirtyChanged, DocumentEvents, SelectionChanged, ThresholdChanged
from isegformer_app.state.labels import Color, as_color
from isegformer_app.state.snapshot import SaveOutcome, Snapshot
from model.clicks import Click
from model.prediction import Prediction, PredictionState
from model.threshold import checked_threshold


class PlaneObject(Protocol):
    """A finished object as shown on the current plane: its attributes and ``mask`` (HxW bool)."""

    uid: int
    label: str
    color: Color
    visible: bool

    @property
    def mask(self) -> np.ndarray: ...


class AnnotationDocument(ABC):
    """An image or a volume being annotated; every user change is a command run by :meth:`execute`
    (undoable) and announced through :attr:`events`.

    ``revision`` counts the changes, ``saved_revision`` is the one the autosave holds; ``on_disk`` is the
    autosave as last read or written here (another instance's save since is merged or kept beside).
    """

    path: Path
    objects: Sequence[PlaneObject]  # the finished objects on the plane shown, bottom to top

    def __init__(self, threshold: float) -> None:
        self.events = DocumentEvents()
        self.threshold = checked_threshold(threshold)  # owned here; the slider shows it
        self.selected_uid: int | None = None
        self.revision = 0
        self.saved_revision = 0
        self.on_disk = SidecarVersion()

    # ------------------------------------------------------------ the plane shown
    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """(H, W) of the plane shown (the image, or the current slice)."""

    @property
    @abstractmethod
    def object_order(self) -> list[Any]:
        """The finished objects themselves (the list commands edit), bottom to top."""

    @abstractmethod
    def session(self) -> ClickSession | None:
        """The click session of the object being clicked on, on the plane shown (None: none yet)."""

    @property
    def clicks(self) -> list[Click]:
        s = self.session()
        return s.clicks if s is not None else []

    @property
    def prob(self) -> np.ndarray | None:
        s = self.session()
        return s.prob if s is not None else None

    @abstractmethod
    def current_mask(self) -> np.ndarray:
        """HxW bool: the object being clicked on, on the plane shown."""

    def has_current(self) -> bool:
        s = self.session()
        return s is not None and s.has_content()

    # ------------------------------------------------------------ predictions
    def needs_prediction(self) -> bool:
        s = self.session()
        return s is not None and s.needs_prediction()

    def prev_state_for_request(self) -> PredictionState | None:
        """What predicting the shown clicks continues from: the state of their longest predicted prefix
        (:meth:`ClickSession.prev_state`); None for a new object."""
        s = self.session()
        return s.prev_state() if s is not None else None

    @abstractmethod
    def prediction_key(self) -> object:
        """What a prediction requested now is for (given back to :meth:`set_prediction`)."""

    @abstractmethod
    def set_prediction(self, clicks: Sequence[Click], prediction: Prediction, key: object = None) -> bool:
        """Store a finished prediction (for ``key`` of :meth:`prediction_key`); True if it is now shown."""

    # ------------------------------------------------------------ history
    @abstractmethod
    def execute(self, command: cmd.DocumentCommand) -> None:
        """Run a document command (one undo step); its ``changes`` say which events follow."""

    @abstractmethod
    def undo(self) -> bool:
        """Undo the newest change; False if there is none."""

    @abstractmethod
    def redo(self) -> bool: ...

    @abstractmethod
    def can_undo(self) -> bool: ...

    @abstractmethod
    def can_redo(self) -> bool: ...

    @property
    def dirty(self) -> bool:
        return self.revision != self.saved_revision

    def _new_revision(self, events: Sequence[object] = ()) -> None:
        """A change was made: announce ``events`` (instances), then the new unsaved revision."""
        self.revision += 1
        for event in events:
            self.events.emit(event)
        self.events.dirty.emit(DirtyChanged(True))

    def _announce(self, command: cmd.DocumentCommand) -> None:
        self._new_revision([change() for change in command.changes])

    # ------------------------------------------------------------ user commands
    def _new_click(self, y: float, x: float, positive: bool, where: str) -> Click:
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"click ({y}, {x}) outside the {where} {w}x{h}")
        return Click(y=float(y), x=float(x), is_positive=bool(positive), index=len(self.clicks))

    @abstractmethod
    def add_click(self, y: float, x: float, positive: bool) -> Click: ...

    @abstractmethod
    def reset_clicks(self) -> None: ...

    @abstractmethod
    def finish_object(self, label: str, color: Color) -> object | None:
        """End the object being clicked on as a finished one; None if there is nothing to finish."""

    @abstractmethod
    def brush_stroke(self, points: Sequence[tuple[float, float]], radius: float, erase: bool,
                     uid: int | None = None) -> None:  # fmt: skip
        """Paint (or erase) a stroke on object ``uid`` or, if None, on the object being clicked on."""

    @abstractmethod
    def delete_object(self, uid: int) -> None: ...

    def object(self, uid: int) -> Any:
        for obj in self.object_order:
            if obj.uid == uid:
                return obj
        raise KeyError(f"no object {uid}")

    def object_index(self, uid: int) -> int:
        return self.object_order.index(self.object(uid))

    def move_object(self, uid: int, new_index: int) -> None:
        """Change the order: ``new_index`` 0 = bottom, len-1 = top."""
        new_index = max(0, min(len(self.object_order) - 1, new_index))
        if new_index != self.object_index(uid):
            self.execute(cmd.MoveObject(uid, new_index))

    def rename_object(self, uid: int, label: str) -> None:
        self.execute(cmd.SetAttribute(uid, "label", label))

    def recolor_object(self, uid: int, color: Color) -> None:
        self.execute(cmd.SetAttribute(uid, "color", as_color(color)))

    def set_visible(self, uid: int, visible: bool) -> None:
        self.execute(cmd.SetAttribute(uid, "visible", bool(visible)))

    def relabel_object(self, uid: int, label: str, color: Color) -> None:
        """Give object ``uid`` class ``label`` and its ``color`` together (one undo step)."""
        self.execute(cmd.RelabelObject(uid, label, color))

    def select(self, uid: int | None) -> None:
        """Select finished object ``uid`` (None: no selection); not an edit (no undo step)."""
        if uid is not None:
            self.object(uid)
        if uid != self.selected_uid:
            self.selected_uid = uid
            self.events.selection.emit(SelectionChanged(uid))

    # ------------------------------------------------------------ threshold
    def set_threshold(self, threshold: float) -> None:
        """Threshold probabilities at ``threshold`` (0..1, exclusive) from now on."""
        self.threshold = checked_threshold(threshold)
        self._threshold_moved()
        self.events.threshold.emit(ThresholdChanged(self.threshold))

    @abstractmethod
    def _threshold_moved(self) -> None:
        """What follows a new threshold besides the masks drawn from it (a volume rewrites its slice)."""

    # ------------------------------------------------------------ autosave
    @abstractmethod
    def snapshot(self) -> Snapshot:
        """A copy of what the autosave writes (taken on the GUI thread, written off it)."""

    def saved(self, snapshot: Snapshot, outcome: SaveOutcome) -> None:
        """``snapshot`` was written (GUI thread): the document is saved up to its revision."""
        self.saved_revision = max(self.saved_revision, snapshot.revision)
        self.events.dirty.emit(DirtyChanged(self.dirty))
