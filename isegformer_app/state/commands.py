"""Reversible commands on a document's finished objects, and those of an image document.

:class:`SetAttribute`, :class:`RelabelObject`, :class:`MoveObject` and :class:`DeleteObject` are the same
for images and volumes (a volume's delete also clears its voxels:
:class:`~isegformer_app.state.volume_commands.DeleteObject` extends this one). Commands on the current
object's clicks, prediction and brush are the click-session commands of
:mod:`~isegformer_app.state.click_session` (shared with volume slices), wrapped in :class:`OnCurrent`.
Each document command names the events it causes (``changes``, types of :mod:`.events`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from isegformer_app.state.click_session import ClickSession
from isegformer_app.state.events import ClicksChanged, ObjectsChanged
from isegformer_app.state.history import Command
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.labels import Color, as_color


class ObjectRecord(Protocol):
    """A finished object's attributes (an image's :class:`AnnotatedObject`, a volume's object)."""

    uid: int
    label: str
    color: Color
    visible: bool


class HasObjects(Protocol):
    """What the shared commands need of a document (image or volume)."""

    selected_uid: int | None

    @property
    def object_order(self) -> list[Any]: ...

    def object(self, uid: int) -> Any: ...

    def object_index(self, uid: int) -> int: ...


class DocumentCommand(Protocol):
    """A reversible change of a whole document (see :class:`~isegformer_app.state.history.Command`) that
    names the events it causes."""

    text: str
    changes: tuple[type, ...]

    def do(self, doc: Any) -> None: ...

    def undo(self, doc: Any) -> None: ...


class ImageTarget(HasObjects, Protocol):
    """What the image commands need of an image document."""

    objects: list[AnnotatedObject]
    current: ClickSession
    next_uid: int
    no_objects: bool

    def current_mask(self) -> np.ndarray: ...


class OnCurrent:
    """A :mod:`~isegformer_app.state.click_session` command applied to the document's current object."""

    changes = (ClicksChanged,)

    def __init__(self, command: Command[ClickSession]) -> None:
        self.command, self.text = command, command.text

    def do(self, doc: ImageTarget) -> None:
        self.command.do(doc.current)

    def undo(self, doc: ImageTarget) -> None:
        self.command.undo(doc.current)


class FinishObject:
    """Commit the current mask as a new object; a mark "done: no objects" goes, and comes back on undo
    (one step, as in :class:`MergeObjects`)."""

    text = "Finish object"
    changes = (ObjectsChanged, ClicksChanged)

    def __init__(self, label: str, color: Color) -> None:
        self.label = label
        self.color = color
        self.obj: AnnotatedObject | None = None

    def do(self, doc: ImageTarget) -> None:
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

    def undo(self, doc: ImageTarget) -> None:
        doc.objects.remove(self.obj)
        if doc.selected_uid == self.obj.uid:
            doc.selected_uid = None
        doc.current.restore(self.before)
        doc.no_objects = self.was_marked


class MergeObjects:
    """Put objects another instance saved into this document, on top, with uids of this document; a mark
    "done: no objects" goes (the image has objects after all) and comes back on undo."""

    text = "Merge objects saved elsewhere"
    changes = (ObjectsChanged,)

    def __init__(self, objects: list[AnnotatedObject]) -> None:
        self.objects = list(objects)
        self.numbered = False

    def do(self, doc: ImageTarget) -> None:
        if not self.numbered:
            for obj in self.objects:
                obj.uid, doc.next_uid = doc.next_uid, doc.next_uid + 1
            self.numbered = True
        doc.objects.extend(self.objects)
        self.no_objects, doc.no_objects = doc.no_objects, False

    def undo(self, doc: ImageTarget) -> None:
        for obj in self.objects:
            doc.objects.remove(obj)
            if doc.selected_uid == obj.uid:
                doc.selected_uid = None
        doc.no_objects = self.no_objects


class PaintObject:
    """Paint/erase ``area`` (HxW bool) on the mask of finished object ``uid``."""

    changes = (ObjectsChanged,)

    def __init__(self, area: np.ndarray, erase: bool, uid: int) -> None:
        ys, xs = np.nonzero(area)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        y0, y1, x0, x1 = self.box
        self.area, self.erase, self.uid = area[y0:y1, x0:x1].copy(), erase, uid
        self.text = "Eraser" if erase else "Brush"

    def do(self, doc: ImageTarget) -> None:
        y0, y1, x0, x1 = self.box
        crop = doc.object(self.uid).mask[y0:y1, x0:x1]
        self.before = crop.copy()
        crop[self.area] = not self.erase

    def undo(self, doc: ImageTarget) -> None:
        y0, y1, x0, x1 = self.box
        doc.object(self.uid).mask[y0:y1, x0:x1] = self.before


class DeleteObject:
    """Take finished object ``uid`` out of the document (back in its place on undo)."""

    text = "Delete object"
    changes = (ObjectsChanged,)

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def do(self, doc: HasObjects) -> None:
        self.index = doc.object_index(self.uid)
        self.obj = doc.object_order.pop(self.index)
        if doc.selected_uid == self.uid:
            doc.selected_uid = None

    def undo(self, doc: HasObjects) -> None:
        doc.object_order.insert(self.index, self.obj)


class SetAttribute:
    """Change ``label``, ``color`` or ``visible`` of one object (of an image or a volume document)."""

    changes = (ObjectsChanged,)

    def __init__(self, uid: int, name: str, value: Any) -> None:
        if name not in ("label", "color", "visible"):
            raise ValueError(f"cannot set {name!r}")
        self.uid, self.name, self.value = uid, name, value
        self.text = {"label": "Rename", "color": "Recolour", "visible": "Show/hide"}[name]

    def do(self, doc: HasObjects) -> None:
        obj = doc.object(self.uid)
        self.old = getattr(obj, self.name)
        setattr(obj, self.name, self.value)

    def undo(self, doc: HasObjects) -> None:
        setattr(doc.object(self.uid), self.name, self.old)


class RelabelObject:
    """Give object ``uid`` another class label *and* that class's colour in one step (of an image or a
    volume document: both offer ``object(uid)``)."""

    text = "Rename"
    changes = (ObjectsChanged,)

    def __init__(self, uid: int, label: str, color: Color) -> None:
        self.uid, self.label = uid, label
        self.color: Color = as_color(color)

    def do(self, doc: HasObjects) -> None:
        obj = doc.object(self.uid)
        self.old = (obj.label, obj.color)
        obj.label, obj.color = self.label, self.color

    def undo(self, doc: HasObjects) -> None:
        obj = doc.object(self.uid)
        obj.label, obj.color = self.old


class MarkNoObjects:
    """Mark an image as checked and holding no object to annotate (exported as a negative image), or
    take the mark back."""

    text = "Mark done: no objects"
    changes = (ObjectsChanged,)

    def __init__(self, value: bool) -> None:
        self.value = bool(value)

    def do(self, doc: ImageTarget) -> None:
        self.old, doc.no_objects = doc.no_objects, self.value

    def undo(self, doc: ImageTarget) -> None:
        doc.no_objects = self.old


class MoveObject:
    """Move object ``uid`` to place ``new_index`` of the order (an image's z-order; a volume's labels do
    not overlap: there it is the display order only)."""

    text = "Change order"
    changes = (ObjectsChanged,)

    def __init__(self, uid: int, new_index: int) -> None:
        self.uid, self.new_index = uid, new_index

    def do(self, doc: HasObjects) -> None:
        self.old_index = doc.object_index(self.uid)
        doc.object_order.insert(self.new_index, doc.object_order.pop(self.old_index))

    def undo(self, doc: HasObjects) -> None:
        doc.object_order.insert(self.old_index, doc.object_order.pop(doc.object_index(self.uid)))

