"""The annotation state of one image (Qt-free): finished objects, the current object, history.

All masks are HxW at the *working* resolution of the image (see :mod:`.imageio`); click
coordinates are working-resolution pixels. Objects are kept bottom-to-top: list order is z-order,
and the exported instance id of an object is its 1-based position in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from isegformer_app.state import click_session as cs
from isegformer_app.state import commands as cmd
from isegformer_app.state.click_session import ClickSession, stroke_mask
from isegformer_app.state.disk_version import SidecarVersion
from isegformer_app.state.history import Command, History
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import Color
from model.clicks import Click
from model.prediction import Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD, checked_threshold


class Document(cmd.ObjectAttributeEdits):
    """One image being annotated; every user change goes through :meth:`execute` (undoable)."""

    def __init__(self, image: LoadedImage, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.image = image
        self.objects: list[AnnotatedObject] = []
        self.current = ClickSession(image.working_size)  # the object being clicked on
        self.threshold = checked_threshold(threshold)  # owned here; the slider shows it (set_threshold)
        self.history: History[Document] = History()
        self.next_uid = 1
        self.selected_uid: int | None = None
        self.no_objects = False  # checked by the user: nothing to annotate here (a negative image)
        self.revision = 0
        self.saved_revision = 0
        self.listeners: list[Callable[[Document], None]] = []
        # the autosave as last read or written here: another instance's save since is merged, not replaced
        self.on_disk = SidecarVersion()

    # ----------------------------------------------------------------- basics
    @property
    def path(self) -> Path:
        return self.image.path

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.working_size

    @property
    def dirty(self) -> bool:
        return self.revision != self.saved_revision

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def object(self, uid: int) -> AnnotatedObject:
        for obj in self.objects:
            if obj.uid == uid:
                return obj
        raise KeyError(f"no object {uid}")

    def object_index(self, uid: int) -> int:
        return self.objects.index(self.object(uid))

    @property
    def clicks(self) -> list[Click]:
        return self.current.clicks

    @property
    def prob(self) -> np.ndarray | None:
        return self.current.prob

    @property
    def brush(self) -> np.ndarray:
        return self.current.brush

    @property
    def predictions(self) -> cs.PrefixCache[Prediction]:
        return self.current.predictions

    def current_mask(self) -> np.ndarray:
        """HxW bool: thresholded probability with brush corrections applied."""
        return self.current.mask(self.threshold)

    def has_current(self) -> bool:
        return self.current.has_content()

    def set_threshold(self, threshold: float) -> None:
        """Threshold the current object's probability at ``threshold`` (0..1, exclusive) from now on."""
        self.threshold = checked_threshold(threshold)
        self.notify()

    # --------------------------------------------------------- history
    def execute(self, command: Command[Document]) -> None:
        command.do(self)
        self.history.push(command)
        self._changed()

    def undo(self) -> bool:
        command = self.history.pop_undo()
        if command is None:
            return False
        command.undo(self)
        self._changed()
        return True

    def redo(self) -> bool:
        command = self.history.pop_redo()
        if command is None:
            return False
        command.do(self)
        self._changed()
        return True

    def _changed(self) -> None:
        self.revision += 1
        self.notify()

    _execute_object_edit = execute

    # ------------------------------------------------------ predictions
    def needs_prediction(self) -> bool:
        return self.current.needs_prediction()

    def prev_state_for_request(self) -> PredictionState | None:
        """What predicting the clicks continues from (:meth:`ClickSession.prev_state`)."""
        return self.current.prev_state()

    def set_prediction(self, clicks: Sequence[Click], prediction: Prediction) -> bool:
        """Store a finished prediction; returns True if it is for the current clicks (now shown)."""
        if prediction.prob.shape != self.shape:
            raise ValueError(f"prediction shape {prediction.prob.shape} != image {self.shape}")
        if self.current.store(clicks, prediction):
            self.notify()
            return True
        return False

    # ---------------------------------------------------- user commands
    def add_click(self, y: float, x: float, positive: bool) -> Click:
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"click ({y}, {x}) outside the image {w}x{h}")
        click = Click(y=float(y), x=float(x), is_positive=bool(positive), index=len(self.clicks))
        self.execute(cmd.OnCurrent(cs.AddClick(click)))
        return click

    def reset_clicks(self) -> None:
        if self.has_current():
            self.execute(cmd.OnCurrent(cs.ResetClicks()))

    def finish_object(self, label: str, color: Color) -> AnnotatedObject | None:
        """Commit the current mask as a new object on top; None if the mask is empty."""
        if not self.current_mask().any():
            return None
        command = cmd.FinishObject(label, color)
        self.execute(command)
        return command.obj

    def brush_stroke(
        self, points: Sequence[tuple[float, float]], radius: float, erase: bool, uid: int | None = None
    ) -> None:
        """Paint (or erase) a stroke on object ``uid`` or, if None, on the current object."""
        area = stroke_mask(self.shape, points, radius)
        if not area.any():
            return
        if uid is None:
            self.execute(cmd.OnCurrent(cs.BrushCorrection(area, erase)))
        else:
            self.execute(cmd.PaintObject(area, erase, uid))

    def merge_objects(self, objects: Sequence[AnnotatedObject]) -> None:
        """Add objects saved by another instance on top (fresh uids; one undo step)."""
        if objects:
            self.execute(cmd.MergeObjects(objects))

    def delete_object(self, uid: int) -> None:
        self.execute(cmd.DeleteObject(uid))

    def mark_no_objects(self, value: bool = True) -> None:
        """Mark the image done with no objects (exported with an empty mask), or take the mark back."""
        if bool(value) != self.no_objects:
            self.execute(cmd.MarkNoObjects(value))

    def move_object(self, uid: int, new_index: int) -> None:
        """Change the z-order: ``new_index`` 0 = bottom, len-1 = top."""
        new_index = max(0, min(len(self.objects) - 1, new_index))
        if new_index != self.object_index(uid):
            self.execute(cmd.MoveObject(uid, new_index))

    # ------------------------------------------------------ rendering
    def instance_map(self) -> np.ndarray:
        """HxW instance ids (1-based list position, later objects on top); uint16 if > 255 objects."""
        dtype = np.uint8 if len(self.objects) <= 255 else np.uint16
        out = np.zeros(self.shape, dtype)
        for i, obj in enumerate(self.objects, start=1):
            out[obj.mask] = i
        return out
