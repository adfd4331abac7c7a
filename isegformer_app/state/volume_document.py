"""Annotation state of a medical volume (Qt-free), slice by slice in axial/coronal/sagittal views.

Objects are 3-D labels in one :class:`~isegformer_app.volumes.LabelVolume` (object uid = label value).
The *active* object is annotated slice by slice: each (object, view axis, slice) has a
:class:`~isegformer_app.state.volume_session.SliceSession` with its own clicks, prediction cache and
undo history, written live into the label volume, so going back to a slice is instant and undo
works per slice. Volume-level changes (new/finish/delete/rename/import) have their own history;
:meth:`undo` takes the most recent of the current slice's and the volume's commands.

For the UI the document shows the *current slice* with the attributes of an image
:class:`~isegformer_app.state.document.Document` (``shape``, ``clicks``, ``prob``, ``objects`` with
``mask``, ``current_mask()``, ``add_click`` ...), so canvas, overlay and panels are shared.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from isegformer_app.state import click_session as cs
from isegformer_app.state import volume_commands as vc
from isegformer_app.state import volume_session as vs
from isegformer_app.state.click_session import stroke_mask
from isegformer_app.state.commands import ObjectAttributeEdits  # the same edits as for images
from isegformer_app.state.disk_version import SidecarVersion
from isegformer_app.state.history import History
from isegformer_app.state.labels import Color, as_color, color_for_index
from isegformer_app.volumes import AXES, LabelInfo, LabelVolume, Volume, slicing
from model.clicks import Click
from model.prediction import Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD, checked_threshold

VolumeObject = vc.VolumeObject


class ObjectView:
    """An object as seen on the current slice: its attributes plus ``mask`` (HxW bool)."""

    def __init__(self, obj: VolumeObject, label_slice: np.ndarray) -> None:
        self._obj, self._slice = obj, label_slice

    def __getattr__(self, name: str):
        return getattr(self._obj, name)

    @property
    def mask(self) -> np.ndarray:
        return self._slice == self._obj.uid


class _MergedHistory:
    """``can_undo`` / ``can_redo`` of the current slice and the volume together (for the Edit menu)."""

    def __init__(self, doc: VolumeDocument) -> None:
        self.doc = doc

    def can_undo(self) -> bool:
        return self.doc._pick("done") is not None

    def can_redo(self) -> bool:
        return self.doc._pick("undone") is not None


class VolumeDocument(ObjectAttributeEdits):
    """A volume being annotated; ``labels.data`` is ``(z, y, x)`` in the volume's display orientation."""

    def __init__(self, volume: Volume, path: Path | str, threshold: float = DEFAULT_THRESHOLD,
                 labels: LabelVolume | None = None) -> None:  # fmt: skip
        self.volume = volume
        self.path = Path(path)
        self.labels = labels if labels is not None else LabelVolume.empty(volume.shape)
        if self.labels.shape != volume.shape:
            raise ValueError(f"label volume {self.labels.shape} does not match the volume {volume.shape}")
        # a new (empty) label volume has no objects: no need to scan its voxels
        self.object_list: list[VolumeObject] = objects_from_labels(labels) if labels is not None else []
        self.sessions: dict[vs.SessionKey, vs.SliceSession] = {}
        self.active: int | None = None
        self.selected_uid: int | None = None
        self.threshold = checked_threshold(threshold)  # owned here; the slider shows it (set_threshold)
        self.axis = "axial"
        self.index = volume.slice_count("axial") // 2
        self.volume_history: History[VolumeDocument] = History()
        self.history = _MergedHistory(self)
        self.next_value = max([1, *(o.uid + 1 for o in self.object_list)])
        self.new_object_label: tuple[str, Color] = ("object", color_for_index(0))
        self.revision = 0
        self.saved_revision = 0
        self.on_disk = SidecarVersion()  # the autosave as last read or written here
        self.listeners: list[Callable[[VolumeDocument], None]] = []
        self._stamps = itertools.count(1)

    # ------------------------------------------------------------------ view
    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the current view's slices."""
        return slicing.view_shape(self.volume.shape, self.axis)

    @property
    def dirty(self) -> bool:
        return self.revision != self.saved_revision

    @property
    def slice_count(self) -> int:
        return self.volume.slice_count(self.axis)

    def set_view(self, axis: str | None = None, index: int | None = None) -> None:
        """Show slice ``index`` of view ``axis`` (the index is clamped to the view's range)."""
        if axis is not None:
            if axis not in AXES:
                raise ValueError(f"unknown view axis {axis!r}; use one of {', '.join(AXES)}")
            if axis != self.axis and index is None:
                index = self.volume.slice_count(axis) // 2
            self.axis = axis
        if index is not None:
            self.index = int(min(max(index, 0), self.slice_count - 1))
        self.notify()

    def model_image(self, axis: str | None = None, index: int | None = None) -> np.ndarray:
        """HxWx3 uint8 model input of a slice (the volume's default window, ``Volume.slice_image``)."""
        return self.volume.slice_image(axis or self.axis, self.index if index is None else index)

    def label_slice(self, axis: str | None = None, index: int | None = None) -> np.ndarray:
        return self.labels.get_slice(axis or self.axis, self.index if index is None else index)

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    # --------------------------------------------------------------- objects
    @property
    def objects(self) -> list[ObjectView]:
        label_slice = self.label_slice()
        return [ObjectView(o, label_slice) for o in self.object_list]

    def object(self, uid: int) -> VolumeObject:
        for obj in self.object_list:
            if obj.uid == uid:
                return obj
        raise KeyError(f"no object {uid}")

    def object_index(self, uid: int) -> int:
        return self.object_list.index(self.object(uid))

    def activate(self, uid: int | None) -> None:
        """Make ``uid`` the object that clicks and propagation edit (None: the next click starts one)."""
        if uid is not None:
            self.object(uid)
        self.active = uid
        self.notify()

    # ------------------------------------------------------------ sessions
    def session(self, value: int | None = None, axis: str | None = None, index: int | None = None,
                create: bool = False) -> vs.SliceSession | None:  # fmt: skip
        value = self.active if value is None else value
        if value is None:
            return None
        key = (value, axis or self.axis, self.index if index is None else index)
        found = self.sessions.get(key)
        if found is None and create:
            base = self.labels.get_slice(key[1], key[2])
            own = base == value
            # an object already on this slice (imported, propagated, finished) is the previous mask
            found = vs.SliceSession(value, key[1], key[2], base=base, written=own,
                                    init_prev=own.astype(np.float32) if own.any() else None)
            self.sessions[key] = found
        return found

    @property
    def clicks(self) -> list[Click]:
        s = self.session()
        return s.clicks if s is not None else []

    @property
    def prob(self) -> np.ndarray | None:
        s = self.session()
        return s.prob if s is not None else None

    def current_mask(self) -> np.ndarray:
        """HxW bool: the active object on the current slice."""
        if self.active is None:
            return np.zeros(self.shape, bool)
        return self.label_slice() == self.active

    def has_current(self) -> bool:
        s = self.session()
        return s is not None and s.has_content()

    def needs_prediction(self) -> bool:
        s = self.session()
        return s is not None and s.needs_prediction()

    def prev_state_for_request(self) -> PredictionState | None:
        s = self.session()
        return s.prev_state() if s is not None else None

    def set_prediction(self, clicks: Sequence[Click], prediction: Prediction,
                       key: vs.SessionKey | None = None) -> bool:  # fmt: skip
        """Store a prediction for session ``key`` (default: the current one); True if it is now shown."""
        s = self.sessions.get(key) if key is not None else self.session()
        if s is None:
            return False
        if not s.store(list(clicks), prediction):
            return False
        self._sync(s)
        self.revision += 1
        self.notify()
        return True

    def _sync(self, s: vs.SliceSession) -> None:
        """Write the session's mask into the label volume (only the pixels it claims change)."""
        mask = s.mask(self.threshold)
        current = self.labels.get_slice(s.axis, s.index)
        new = current.copy()
        gone = s.written & ~mask
        under = np.where(s.base == s.value, 0, s.base)
        new[gone] = under[gone]
        new[mask] = s.value
        s.written = mask
        if not np.array_equal(new, current):
            self.labels.ensure_value(s.value)
            slicing.insert_slice(self.labels.data, s.axis, s.index, new.astype(self.labels.data.dtype))

    def set_threshold(self, threshold: float) -> None:
        """Threshold at ``threshold`` (0..1, exclusive) from now on; the current slice's object follows."""
        self.threshold = checked_threshold(threshold)
        self.resync()

    def resync(self) -> None:
        """Re-apply the current slice's session (after a threshold change)."""
        s = self.session()
        if s is not None:
            self._sync(s)
            self.revision += 1
        self.notify()

    # -------------------------------------------------------------- history
    def _clear_redo(self) -> None:
        self.volume_history.undone.clear()
        for s in self.sessions.values():
            s.history.undone.clear()

    def _execute_slice(self, s: vs.SliceSession, command) -> None:
        self._clear_redo()
        command.stamp = next(self._stamps)
        command.do(s)
        s.history.push(command)
        self._sync(s)
        self._changed()

    def _execute_volume(self, command) -> None:
        self._clear_redo()
        command.stamp = next(self._stamps)
        command.do(self)
        self.volume_history.push(command)
        self._changed()

    _execute_object_edit = _execute_volume

    def _changed(self) -> None:
        self.revision += 1
        self.notify()

    def _pick(self, stack: str) -> tuple[History, vs.SliceSession | None] | None:
        """The history whose top command (``done``: newest; ``undone``: most recently undone) goes next."""
        candidates = [(self.volume_history, None)]
        candidates += [(s.history, s) for k, s in self.sessions.items() if k[1:] == (self.axis, self.index)]
        tops = [(getattr(h, stack)[-1].stamp, h, s) for h, s in candidates if getattr(h, stack)]
        if not tops:
            return None
        _, history, s = (max if stack == "done" else min)(tops, key=lambda t: t[0])
        return history, s

    def undo(self) -> bool:
        """Undo the newest command of the current slice or of the volume; False if there is none."""
        return self._step("done")

    def redo(self) -> bool:
        return self._step("undone")

    def _step(self, stack: str) -> bool:
        picked = self._pick(stack)
        if picked is None:
            return False
        history, s = picked
        command = history.pop_undo() if stack == "done" else history.pop_redo()
        target = self if s is None else s
        command.undo(target) if stack == "done" else command.do(target)
        if s is not None:
            self._sync(s)
        self._changed()
        return True

    # ------------------------------------------------------- user commands
    def _ensure_active(self) -> int:
        if self.active is None:
            label, color = self.new_object_label
            self._execute_volume(vc.NewObject(VolumeObject(self.next_value, label, color)))
        return self.active

    def add_click(self, y: float, x: float, positive: bool) -> Click:
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"click ({y}, {x}) outside the {self.axis} slice {w}x{h}")
        s = self.session(self._ensure_active(), create=True)
        click = Click(y=float(y), x=float(x), is_positive=bool(positive), index=len(s.clicks))
        self._execute_slice(s, cs.AddClick(click))
        return click

    def reset_clicks(self) -> None:
        s = self.session()
        if s is not None and s.has_content():
            self._execute_slice(s, cs.ResetClicks())

    def finish_object(self, label: str, color: Color) -> VolumeObject | None:
        """End the active object (giving it ``label``/``color``); None if there is none or it is empty."""
        if self.active is None or not np.any(self.labels.data == self.active):
            return None
        uid = self.active
        self._execute_volume(vc.FinishObject(label, as_color(color)))
        return self.object(uid)

    def brush_stroke(self, points: Sequence[tuple[float, float]], radius: float, erase: bool,
                     uid: int | None = None) -> None:  # fmt: skip
        """Paint/erase on object ``uid`` (default: the active one, started if needed) on this slice."""
        area = stroke_mask(self.shape, points, radius)
        if not area.any() or (uid is None and self.active is None and erase):
            return
        value = uid if uid is not None else self._ensure_active()
        self._execute_slice(self.session(value, create=True), cs.BrushCorrection(area, erase))

    def delete_object(self, uid: int) -> None:
        self._execute_volume(vc.DeleteObject(uid))

    def move_object(self, uid: int, new_index: int) -> None:
        new_index = max(0, min(len(self.object_list) - 1, new_index))
        if new_index != self.object_index(uid):
            self._execute_volume(vc.MoveObject(uid, new_index))

    def apply_propagation(self, value: int, axis: str, index: int, clicks: list[Click],
                          prediction: Prediction, source_mask: np.ndarray) -> None:  # fmt: skip
        """Put a propagation result on slice ``index`` of object ``value`` (undoable on that slice)."""
        self.object(value)
        self.active = value
        s = self.session(value, axis, index, create=True)
        self._execute_slice(s, cs.SetPropagated(clicks, prediction, source_mask))

    # ------------------------------------------------------- labels in/out
    def label_infos(self) -> dict[int, LabelInfo]:
        return {o.uid: LabelInfo(o.uid, o.label, o.color, 1.0, o.visible) for o in self.object_list}

    def export_labels(self) -> LabelVolume:
        """A copy of the label volume with the objects' names and colours."""
        return LabelVolume(self.labels.data.copy(), self.label_infos())

    def import_labels(self, imported: LabelVolume) -> None:
        """Replace the labels (undoable); objects are the imported label values with their names/colours."""
        if imported.shape != self.volume.shape:
            raise ValueError(f"label volume {imported.shape} does not match the volume {self.volume.shape}")
        self._execute_volume(vc.ReplaceLabels(imported.data, objects_from_labels(imported)))


def objects_from_labels(labels: LabelVolume) -> list[VolumeObject]:
    """One object per label value present, named and coloured from ``labels.labels``."""
    out = []
    for value in labels.present_values():
        info = labels.labels.get(value)
        name = info.name if info is not None else f"Label {value}"
        color = as_color(info.color) if info is not None else color_for_index(value - 1)
        out.append(VolumeObject(value, name, color, info.visible if info is not None else True))
    return out
