"""Reversible user commands on a :class:`~isegformer_app.state.document.Document`.

Commands on the current object's clicks, prediction and brush are the click-session commands of
:mod:`~isegformer_app.state.click_session` (shared with volume slices), wrapped in :class:`OnCurrent`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from isegformer_app.state.history import Command
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.labels import as_color

if TYPE_CHECKING:
    from isegformer_app.state.click_session import ClickSession
    from isegformer_app.state.document import Document
    from isegformer_app.state.labels import Color


class OnCurrent:
    """A :mod:`~isegformer_app.state.click_session` command applied to the document's current object."""

    def __init__(self, command: Command[ClickSession]) -> None:
        self.command, self.text = command, command.text

    def do(self, doc: Document) -> None:
        self.command.do(doc.current)

    def undo(self, doc: Document) -> None:
        self.command.undo(doc.current)


class FinishObject:
    """Commit the current mask as a new object; a mark "done: no objects" goes, and comes back on undo
    (one step, as in :class:`MergeObjects`)."""

    text = "Finish object"

    def __init__(self, label: str, color: Color) -> None:
        self.label = label
        self.color = color
        self.obj: AnnotatedObject | None = None

    def do(self, doc: Document) -> None:
        if self.obj is None:
            self.obj = AnnotatedObject(
                uid=doc.next_uid, label=self.label, color=self.color,
                mask=doc.current_mask(), clicks=list(doc.clicks),
            )  # fmt: skip
            doc.next_uid += 1
        self.before = doc.current.snapshot()
        self.was_marked, doc.no_objects = doc.no_objects, False  # it has an object after all
        doc.objects.append(self.obj)
        doc.current.clear()

    def undo(self, doc: Document) -> None:
        doc.objects.remove(self.obj)
        if doc.selected_uid == self.obj.uid:
            doc.selected_uid = None
        doc.current.restore(self.before)
        doc.no_objects = self.was_marked


class MergeObjects:
    """Put objects another instance saved into this document, on top, with uids of this document; a mark
    "done: no objects" goes (the image has objects after all) and comes back on undo."""

    text = "Merge objects saved elsewhere"

    def __init__(self, objects: list[AnnotatedObject]) -> None:
        self.objects = list(objects)
        self.numbered = False

    def do(self, doc: Document) -> None:
        if not self.numbered:
            for obj in self.objects:
                obj.uid, doc.next_uid = doc.next_uid, doc.next_uid + 1
            self.numbered = True
        doc.objects.extend(self.objects)
        self.no_objects, doc.no_objects = doc.no_objects, False

    def undo(self, doc: Document) -> None:
        for obj in self.objects:
            doc.objects.remove(obj)
            if doc.selected_uid == obj.uid:
                doc.selected_uid = None
        doc.no_objects = self.no_objects


class PaintObject:
    """Paint/erase ``area`` (HxW bool) on the mask of finished object ``uid``."""

    def __init__(self, area: np.ndarray, erase: bool, uid: int) -> None:
        ys, xs = np.nonzero(area)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        y0, y1, x0, x1 = self.box
        self.area, self.erase, self.uid = area[y0:y1, x0:x1].copy(), erase, uid
        self.text = "Eraser" if erase else "Brush"

    def do(self, doc: Document) -> None:
        y0, y1, x0, x1 = self.box
        crop = doc.object(self.uid).mask[y0:y1, x0:x1]
        self.before = crop.copy()
        crop[self.area] = not self.erase

    def undo(self, doc: Document) -> None:
        y0, y1, x0, x1 = self.box
        doc.object(self.uid).mask[y0:y1, x0:x1] = self.before


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


class RelabelObject:
    """Give object ``uid`` another class label *and* that class's colour in one step (of an image or a
    volume document: both offer ``object(uid)``)."""

    text = "Rename"

    def __init__(self, uid: int, label: str, color: Color) -> None:
        self.uid, self.label = uid, label
        self.color: Color = as_color(color)

    def do(self, doc: Document) -> None:
        obj = doc.object(self.uid)
        self.old = (obj.label, obj.color)
        obj.label, obj.color = self.label, self.color

    def undo(self, doc: Document) -> None:
        obj = doc.object(self.uid)
        obj.label, obj.color = self.old


class ObjectAttributeEdits:
    """Rename, recolour, show/hide and relabel a finished object: the same commands for image and volume
    documents, each run through the document's :meth:`_execute_object_edit` (one undo step)."""

    def _execute_object_edit(self, command: Command[Any]) -> None:
        raise NotImplementedError

    def rename_object(self, uid: int, label: str) -> None:
        self._execute_object_edit(SetAttribute(uid, "label", label))

    def recolor_object(self, uid: int, color: Color) -> None:
        self._execute_object_edit(SetAttribute(uid, "color", as_color(color)))

    def set_visible(self, uid: int, visible: bool) -> None:
        self._execute_object_edit(SetAttribute(uid, "visible", bool(visible)))

    def relabel_object(self, uid: int, label: str, color: Color) -> None:
        """Give object ``uid`` class ``label`` and its ``color`` together (one undo step)."""
        self._execute_object_edit(RelabelObject(uid, label, color))


class MarkNoObjects:
    """Mark an image as checked and holding no object to annotate (exported as a negative image), or
    take the mark back."""

    text = "Mark done: no objects"

    def __init__(self, value: bool) -> None:
        self.value = bool(value)

    def do(self, doc: Document) -> None:
        self.old, doc.no_objects = doc.no_objects, self.value

    def undo(self, doc: Document) -> None:
        doc.no_objects = self.old


class MoveObject:
    text = "Change z-order"

    def __init__(self, uid: int, new_index: int) -> None:
        self.uid, self.new_index = uid, new_index

    def do(self, doc: Document) -> None:
        self.old_index = doc.object_index(self.uid)
        doc.objects.insert(self.new_index, doc.objects.pop(self.old_index))

    def undo(self, doc: Document) -> None:
        doc.objects.insert(self.old_index, doc.objects.pop(doc.object_index(self.uid)))

