"""Reversible user commands on a :class:`~isegformer_app.state.document.Document`."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from model.clicks import Click

if TYPE_CHECKING:
    from isegformer_app.state.document import AnnotatedObject, Document
    from isegformer_app.state.labels import Color


class AddClick:
    text = "Click"

    def __init__(self, click: Click) -> None:
        self.click = click

    def do(self, doc: Document) -> None:
        doc.clicks.append(self.click)
        doc.restore_prob()

    def undo(self, doc: Document) -> None:
        doc.clicks.pop()
        doc.restore_prob()


class _CurrentSnapshot:
    """Everything describing the current (unfinished) object, to put it back on undo."""

    def __init__(self, doc: Document) -> None:
        self.clicks = list(doc.clicks)
        self.prob = doc.prob
        self.brush = doc.brush.copy()
        self.cache = doc.prob_cache

    def restore(self, doc: Document) -> None:
        doc.clicks = list(self.clicks)
        doc.prob = self.prob
        doc.brush = self.brush.copy()
        doc.prob_cache = self.cache

    @staticmethod
    def clear(doc: Document) -> None:
        doc.clicks = []
        doc.prob = None
        doc.brush = np.zeros(doc.shape, np.int8)
        doc.prob_cache = OrderedDict()


class ResetCurrent:
    text = "Reset clicks"

    def do(self, doc: Document) -> None:
        self.before = _CurrentSnapshot(doc)
        _CurrentSnapshot.clear(doc)

    def undo(self, doc: Document) -> None:
        self.before.restore(doc)


class FinishObject:
    text = "Finish object"

    def __init__(self, label: str, color: Color) -> None:
        self.label = label
        self.color = color
        self.obj: AnnotatedObject | None = None

    def do(self, doc: Document) -> None:
        from isegformer_app.state.document import AnnotatedObject

        if self.obj is None:
            self.obj = AnnotatedObject(
                uid=doc.next_uid, label=self.label, color=self.color,
                mask=doc.current_mask(), clicks=list(doc.clicks),
            )  # fmt: skip
            doc.next_uid += 1
        self.before = _CurrentSnapshot(doc)
        doc.objects.append(self.obj)
        _CurrentSnapshot.clear(doc)

    def undo(self, doc: Document) -> None:
        doc.objects.remove(self.obj)
        if doc.selected_uid == self.obj.uid:
            doc.selected_uid = None
        self.before.restore(doc)


class BrushStroke:
    """Paint/erase ``area`` on object ``uid`` (or on the current object when ``uid`` is None)."""

    def __init__(self, area: np.ndarray, erase: bool, uid: int | None) -> None:
        ys, xs = np.nonzero(area)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        y0, y1, x0, x1 = self.box
        self.area = area[y0:y1, x0:x1].copy()
        self.erase = erase
        self.uid = uid
        self.text = "Eraser" if erase else "Brush"

    def _target(self, doc: Document) -> np.ndarray:
        return doc.brush if self.uid is None else doc.object(self.uid).mask

    def do(self, doc: Document) -> None:
        y0, y1, x0, x1 = self.box
        crop = self._target(doc)[y0:y1, x0:x1]
        self.before = crop.copy()
        if self.uid is None:
            crop[self.area] = -1 if self.erase else 1
        else:
            crop[self.area] = not self.erase

    def undo(self, doc: Document) -> None:
        y0, y1, x0, x1 = self.box
        self._target(doc)[y0:y1, x0:x1] = self.before


class DeleteObject:
    text = "Delete object"

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def do(self, doc: Document) -> None:
        self.index = doc.object_index(self.uid)
        self.obj = doc.objects.pop(self.index)
        if doc.selected_uid == self.uid:
            doc.selected_uid = None

    def undo(self, doc: Document) -> None:
        doc.objects.insert(self.index, self.obj)


class SetAttribute:
    """Change ``label``, ``color`` or ``visible`` of one object (of an image or a volume document)."""

    def __init__(self, uid: int, name: str, value: Any) -> None:
        if name not in ("label", "color", "visible"):
            raise ValueError(f"cannot set {name!r}")
        self.uid, self.name, self.value = uid, name, value
        self.text = {"label": "Rename", "color": "Recolour", "visible": "Show/hide"}[name]

    def do(self, doc: Document) -> None:
        obj = doc.object(self.uid)
        self.old = getattr(obj, self.name)
        setattr(obj, self.name, self.value)

    def undo(self, doc: Document) -> None:
        setattr(doc.object(self.uid), self.name, self.old)


class MoveObject:
    text = "Change z-order"

    def __init__(self, uid: int, new_index: int) -> None:
        self.uid, self.new_index = uid, new_index

    def do(self, doc: Document) -> None:
        self.old_index = doc.object_index(self.uid)
        doc.objects.insert(self.new_index, doc.objects.pop(self.old_index))

    def undo(self, doc: Document) -> None:
        doc.objects.insert(self.old_index, doc.objects.pop(doc.object_index(self.uid)))

