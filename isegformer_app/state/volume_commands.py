"""Undoable volume-level commands of a :class:`~isegformer_app.state.volume_document.VolumeDocument`
(renaming, recolouring, hiding and reordering are the shared commands of :mod:`.commands`).

Objects are 3-D labels: object ``uid`` is the label value of its voxels. Commands that touch voxels of
the whole volume remember exactly the voxels they changed (flat indices + old values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from isegformer_app.state import commands as shared
from isegformer_app.state.events import ClicksChanged, ObjectsChanged
from isegformer_app.state.labels import Color
from isegformer_app.state.volume_session import SessionKey, SliceSession
from isegformer_app.volumes import LabelVolume

SliceRef = tuple[str, int]  # (view axis, slice index)
FinishedSlices = dict[int, set[SliceRef]]  # object uid -> the slices it was annotated on


@dataclass
class VolumeObject:
    """A 3-D object: ``uid`` = its label value in the label volume."""

    uid: int
    label: str
    color: Color
    visible: bool = True


class VolumeTarget(shared.HasObjects, Protocol):
    """What the volume commands need of a volume document."""

    labels: LabelVolume
    object_list: list[VolumeObject]
    sessions: dict[SessionKey, SliceSession]
    finished_slices: FinishedSlices
    active: int | None
    next_value: int


def _take_voxels(doc: VolumeTarget, value: int) -> np.ndarray:
    """Clear the voxels of ``value``; returns their flat indices."""
    flat = doc.labels.data.reshape(-1)
    where = np.flatnonzero(flat == value)
    flat[where] = 0
    return where


class NewObject:
    """Start object ``obj`` and make it the active one (undo clears its voxels, redo restores them)."""

    text = "New object"
    changes = (ObjectsChanged, ClicksChanged)  # the new object is the one clicks edit

    def __init__(self, obj: VolumeObject) -> None:
        self.obj = obj
        self.voxels: np.ndarray | None = None

    def do(self, doc: VolumeTarget) -> None:
        self.previous_active = doc.active
        doc.object_list.append(self.obj)
        doc.labels.ensure_value(self.obj.uid)
        if self.voxels is not None:
            doc.labels.data.reshape(-1)[self.voxels] = self.obj.uid
        doc.active = self.obj.uid
        doc.next_value = max(doc.next_value, self.obj.uid + 1)

    def undo(self, doc: VolumeTarget) -> None:
        self.voxels = _take_voxels(doc, self.obj.uid)
        doc.object_list.remove(self.obj)
        doc.active = self.previous_active
        if doc.selected_uid == self.obj.uid:
            doc.selected_uid = None


class FinishObject:
    """End the active object: its slice sessions (clicks, caches) are put away; label/colour are set. The
    slices where it had clicks or brush strokes join its ``finished_slices`` (the training data)."""

    text = "Finish object"
    changes = (ObjectsChanged, ClicksChanged)

    def __init__(self, label: str, color: Color) -> None:
        self.label, self.color = label, color

    def do(self, doc: VolumeTarget) -> None:
        self.uid = doc.active
        obj = doc.object(self.uid)
        self.old = (obj.label, obj.color)
        obj.label, obj.color = self.label, self.color
        self.sessions = {k: s for k, s in doc.sessions.items() if k[0] == self.uid}
        for key in self.sessions:
            del doc.sessions[key]
        self.old_slices = doc.finished_slices.get(self.uid)
        worked = {(axis, index) for (_, axis, index), s in self.sessions.items() if s.has_content()}
        if worked or self.old_slices is not None:
            doc.finished_slices[self.uid] = (self.old_slices or set()) | worked
        doc.active = None

    def undo(self, doc: VolumeTarget) -> None:
        obj = doc.object(self.uid)
        obj.label, obj.color = self.old
        doc.sessions.update(self.sessions)
        _put_slices(doc, self.uid, self.old_slices)
        doc.active = self.uid


def _put_slices(doc: VolumeTarget, uid: int, slices: set[SliceRef] | None) -> None:
    """Set (None: remove) the finished slices of object ``uid``."""
    if slices is None:
        doc.finished_slices.pop(uid, None)
    else:
        doc.finished_slices[uid] = slices


class DeleteObject(shared.DeleteObject):
    """Delete object ``uid`` (as for images) and clear its voxels; it is no longer the active one."""

    changes = (ObjectsChanged, ClicksChanged)

    def do(self, doc: VolumeTarget) -> None:
        super().do(doc)
        self.voxels = _take_voxels(doc, self.uid)
        self.slices = doc.finished_slices.pop(self.uid, None)
        self.was_active = doc.active == self.uid
        if self.was_active:
            doc.active = None

    def undo(self, doc: VolumeTarget) -> None:
        super().undo(doc)
        doc.labels.data.reshape(-1)[self.voxels] = self.uid
        _put_slices(doc, self.uid, self.slices)
        if self.was_active:
            doc.active = self.uid


class ReplaceLabels:
    """Replace the whole label volume and object list (label map import); the old ones come back on undo.
    Imported objects have no finished slices (nobody annotated them here)."""

    text = "Import labels"
    changes = (ObjectsChanged, ClicksChanged)

    def __init__(self, data: np.ndarray, objects: list[VolumeObject]) -> None:
        self.state = (data, objects, {}, {}, None, None)

    def _swap(self, doc: VolumeTarget) -> None:
        current = (doc.labels.data, doc.object_list, doc.sessions, doc.finished_slices, doc.active,
                   doc.selected_uid)  # fmt: skip
        (doc.labels.data, doc.object_list, doc.sessions, doc.finished_slices, doc.active,
         doc.selected_uid) = self.state  # fmt: skip
        self.state = current
        doc.next_value = max([doc.next_value, *(o.uid + 1 for o in doc.object_list)])

    def do(self, doc: VolumeTarget) -> None:
        self._swap(doc)

    def undo(self, doc: VolumeTarget) -> None:
        self._swap(doc)
