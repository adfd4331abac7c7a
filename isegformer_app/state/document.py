"""The annotation state of one image (Qt-free): finished objects, the current object, history.

All masks are HxW at the *working* resolution of the image (see :mod:`.imageio`); click
coordinates are working-resolution pixels. Objects are kept bottom-to-top: list order is z-order,
and the exported instance id of an object is its 1-based position in that list.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from isegformer_app.state import commands as cmd
from isegformer_app.state.history import Command, History
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import Color
from model.clicks import Click

DEFAULT_THRESHOLD = 0.49
ClickKey = tuple[tuple[float, float, bool], ...]


def click_key(clicks: Sequence[Click]) -> ClickKey:
    return tuple((c.y, c.x, c.is_positive) for c in clicks)


@dataclass
class AnnotatedObject:
    """A finished instance: ``mask`` HxW bool, ``clicks`` that produced it (kept for reference)."""

    uid: int
    label: str
    color: Color
    mask: np.ndarray
    visible: bool = True
    clicks: list[Click] = field(default_factory=list)


def stroke_mask(shape: tuple[int, int], points: Sequence[tuple[float, float]], radius: float) -> np.ndarray:
    """HxW bool mask of a brush stroke through ``points`` ((y, x) pixels) of the given radius."""
    canvas = np.zeros(shape, np.uint8)
    r = max(1, round(radius))
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    dense = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        steps = max(1, int(np.ceil(np.abs(b - a).max())))
        dense.append(a + (b - a) * (np.arange(1, steps + 1)[:, None] / steps))
    for y, x in np.rint(np.concatenate(dense)).astype(int):
        cv2.circle(canvas, (int(x), int(y)), r, 1, thickness=-1)
    return canvas.astype(bool)


class Document:
    """One image being annotated; every user change goes through :meth:`execute` (undoable)."""

    CACHE_SIZE = 64  # predicted click lists kept for undo/redo ...
    CACHE_BYTES = 512 * 2**20  # ... and at most this much memory (large images keep fewer)

    def __init__(self, image: LoadedImage, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.image = image
        self.objects: list[AnnotatedObject] = []
        self.clicks: list[Click] = []
        self.prob: np.ndarray | None = None
        self.brush = np.zeros(self.shape, np.int8)  # current object: +1 painted, -1 erased, 0 = model
        self.threshold = threshold
        self.history = History()
        self.prob_cache: OrderedDict[ClickKey, np.ndarray] = OrderedDict()
        self.next_uid = 1
        self.selected_uid: int | None = None
        self.revision = 0
        self.saved_revision = 0
        self.listeners: list[Callable[[Document], None]] = []

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

    def current_mask(self) -> np.ndarray:
        """HxW bool: thresholded probability with brush corrections applied."""
        mask = self.prob >= self.threshold if self.prob is not None else np.zeros(self.shape, bool)
        return (mask | (self.brush > 0)) & ~(self.brush < 0)

    def has_current(self) -> bool:
        return bool(self.clicks) or bool(self.brush.any())

    # --------------------------------------------------------- history
    def execute(self, command: Command) -> None:
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

    # ------------------------------------------------------ predictions
    def restore_prob(self) -> None:
        """Set ``prob`` from the cache for the current clicks (None when not predicted yet)."""
        self.prob = self.prob_cache.get(click_key(self.clicks)) if self.clicks else None

    def needs_prediction(self) -> bool:
        return bool(self.clicks) and click_key(self.clicks) not in self.prob_cache

    def prev_mask_for_request(self) -> np.ndarray:
        """Probability of the longest already-predicted prefix of the clicks (zeros if none)."""
        for n in range(len(self.clicks) - 1, 0, -1):
            found = self.prob_cache.get(click_key(self.clicks[:n]))
            if found is not None:
                return found
        return np.zeros(self.shape, np.float32)

    def set_prediction(self, clicks: Sequence[Click], prob: np.ndarray) -> bool:
        """Store a finished prediction; returns True if it is for the current clicks (now shown)."""
        if prob.shape != self.shape:
            raise ValueError(f"prediction shape {prob.shape} != image {self.shape}")
        key = click_key(clicks)
        self.prob_cache[key] = prob.astype(np.float32, copy=False)
        self.prob_cache.move_to_end(key)
        limit = max(1, min(self.CACHE_SIZE, self.CACHE_BYTES // max(1, prob.size * 4)))
        while len(self.prob_cache) > limit:
            self.prob_cache.popitem(last=False)
        if key == click_key(self.clicks):
            self.prob = self.prob_cache[key]
            self.notify()
            return True
        return False

    # ---------------------------------------------------- user commands
    def add_click(self, y: float, x: float, positive: bool) -> Click:
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"click ({y}, {x}) outside the image {w}x{h}")
        click = Click(y=float(y), x=float(x), is_positive=bool(positive), index=len(self.clicks))
        self.execute(cmd.AddClick(click))
        return click

    def reset_clicks(self) -> None:
        if self.has_current():
            self.execute(cmd.ResetCurrent())

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
        if area.any():
            self.execute(cmd.BrushStroke(area, erase, uid))

    def delete_object(self, uid: int) -> None:
        self.execute(cmd.DeleteObject(uid))

    def rename_object(self, uid: int, label: str) -> None:
        self.execute(cmd.SetAttribute(uid, "label", label))

    def recolor_object(self, uid: int, color: Color) -> None:
        self.execute(cmd.SetAttribute(uid, "color", tuple(int(v) for v in color)))

    def set_visible(self, uid: int, visible: bool) -> None:
        self.execute(cmd.SetAttribute(uid, "visible", bool(visible)))

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
