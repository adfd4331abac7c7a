"""The annotation state of one image (Qt-free): finished objects, the current object, history.

All masks are HxW at the *working* resolution of the image (see :mod:`.imageio`); click
coordinates are working-resolution pixels. Objects are kept bottom-to-top: list order is z-order,
and the exported instance id of an object is its 1-based position in that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isegformer_app.state import click_session as cs
from isegformer_app.state import commands as cmd
from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.click_session import ClickSession, stroke_mask
from isegformer_app.state.events import PredictionChanged
from isegformer_app.state.history import History
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.image_sidecar import FORMAT_VERSION, SIDECAR_SUFFIX, ImageSnapshot
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import Color
from isegformer_app.state.sidecar_codec import clicks_to_json, session_arrays
from isegformer_app.state.snapshot import SaveOutcome, Snapshot
from model.clicks import Click
from model.prediction import Prediction
from model.threshold import DEFAULT_THRESHOLD


class Document(AnnotationDocument):
    """One image being annotated; every user change goes through :meth:`execute` (undoable)."""

    def __init__(self, image: LoadedImage, threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__(threshold)
        self.image = image
        self.objects: list[AnnotatedObject] = []
        self.current = ClickSession(image.working_size)  # the object being clicked on
        self.history: History[Document] = History()  # of cmd.DocumentCommand
        self.next_uid = 1
        self.no_objects = False  # checked by the user: nothing to annotate here (a negative image)

    # ----------------------------------------------------------------- basics
    @property
    def path(self) -> Path:
        return self.image.path

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.working_size

    @property
    def object_order(self) -> list[AnnotatedObject]:
        return self.objects

    def session(self) -> ClickSession:
        return self.current

    @property
    def brush(self) -> np.ndarray:
        return self.current.brush

    @property
    def predictions(self) -> cs.PrefixCache[Prediction]:
        return self.current.predictions

    def current_mask(self) -> np.ndarray:
        """HxW bool: thresholded probability with brush corrections applied."""
        return self.current.mask(self.threshold)

    def _threshold_moved(self) -> None:
        """Nothing to do: the current mask is thresholded when it is asked for."""

    # --------------------------------------------------------- history
    def execute(self, command: cmd.DocumentCommand) -> None:
        command.do(self)
        self.history.push(command)
        self._announce(command)

    def undo(self) -> bool:
        command = self.history.pop_undo()
        if command is None:
            return False
        command.undo(self)
        self._announce(command)
        return True

    def redo(self) -> bool:
        command = self.history.pop_redo()
        if command is None:
            return False
        command.do(self)
        self._announce(command)
        return True

    def can_undo(self) -> bool:
        return self.history.can_undo()

    def can_redo(self) -> bool:
        return self.history.can_redo()

    # ------------------------------------------------------ predictions
    def prediction_key(self) -> None:
        return None  # one plane, one session: a prediction is for the current object

    def set_prediction(self, clicks: Sequence[Click], prediction: Prediction, key: object = None) -> bool:
        """Store a finished prediction; returns True if it is for the current clicks (now shown)."""
        if prediction.prob.shape != self.shape:
            raise ValueError(f"prediction shape {prediction.prob.shape} != image {self.shape}")
        if self.current.store(clicks, prediction):
            self.events.prediction.emit(PredictionChanged())
            return True
        return False

    # ---------------------------------------------------- user commands
    def add_click(self, y: float, x: float, positive: bool) -> Click:
        click = self._new_click(y, x, positive, "image")
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

    # ------------------------------------------------------ autosave
    def snapshot(self) -> ImageSnapshot:
        """A copy of everything the autosave writes (independent of later edits)."""
        h, w = self.shape
        meta = {
            "version": FORMAT_VERSION,
            "image": self.path.name,
            "image_sha256": self.image.digest,
            "full_size": list(self.image.full_size),
            "exif_rotated": self.image.exif_rotated,
            "working_size": [h, w],
            "threshold": self.threshold,
            "next_uid": self.next_uid,
            "no_objects": self.no_objects,
            "clicks": clicks_to_json(self.clicks),
            "objects": [
                {"uid": o.uid, "label": o.label, "color": list(o.color), "visible": o.visible,
                 "clicks": clicks_to_json(o.clicks)}
                for o in self.objects
            ],
        }  # fmt: skip
        arrays = {"masks": np.packbits(np.stack([o.mask for o in self.objects]) if self.objects
                                       else np.zeros((0, h, w), bool), axis=-1),
                  **session_arrays(self.current)}  # fmt: skip
        return ImageSnapshot(meta, arrays, self.revision, self.path, f"{self.path.name}{SIDECAR_SUFFIX}",
                             self.on_disk)  # fmt: skip

    def saved(self, snapshot: Snapshot, outcome: SaveOutcome) -> None:
        """Saved up to the snapshot; the objects another instance had saved meanwhile are added (one undo
        step; the document is then dirty again)."""
        super().saved(snapshot, outcome)
        self.merge_objects(outcome.merged)

    # ------------------------------------------------------ rendering
    def instance_map(self) -> np.ndarray:
        """HxW instance ids (1-based list position, later objects on top); uint16 if > 255 objects."""
        dtype = np.uint8 if len(self.objects) <= 255 else np.uint16
        out = np.zeros(self.shape, dtype)
        for i, obj in enumerate(self.objects, start=1):
            out[obj.mask] = i
        return out
