"""Annotation state of a medical volume (Qt-free), slice by slice in axial/coronal/sagittal views.

Objects are 3-D labels in one :class:`~isegformer_app.volumes.LabelVolume` (object uid = label value).
The *active* object is annotated slice by slice: each (object, view axis, slice) has a
:class:`~isegformer_app.state.volume_session.SliceSession` with its own clicks, prediction cache and
undo history, written live into the label volume, so going back to a slice is instant and undo
works per slice. Volume-level changes (new/finish/delete/rename/import) have their own history;
:meth:`VolumeDocument.undo` takes the most recent of the current slice's and the volume's commands.
A finished object remembers the slices it was annotated on (``finished_slices``): the training data.

As an :class:`~isegformer_app.state.annotation.AnnotationDocument` it shows the *current slice*: its
``objects`` are :class:`SliceObject` (an object with its mask on that slice), its ``session()`` the active
object's session there, so canvas, overlay and panels are shared with images.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isegformer_app.state import click_session as cs
from isegformer_app.state import commands as cmd
from isegformer_app.state import volume_commands as vc
from isegformer_app.state import volume_session as vs
from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.click_session import stroke_mask
from isegformer_app.state.events import ClicksChanged, PredictionChanged, ViewChanged
from isegformer_app.state.history import History
from isegformer_app.state.labels import Color, as_color, color_for_index
from isegformer_app.state.sidecar_codec import clicks_to_json, session_arrays
from isegformer_app.state.volume_sidecar import FORMAT_VERSION, SUFFIX, VolumeSnapshot, volume_stem
from isegformer_app.volumes import AXES, LabelInfo, LabelVolume, Volume, slicing
from model.clicks import Click
from model.prediction import Prediction
from model.threshold import DEFAULT_THRESHOLD

VolumeObject = vc.VolumeObject


@dataclass(frozen=True, eq=False)
class SliceObject:
    """A volume object as shown on one slice: its attributes and ``mask`` (HxW bool, computed from the
    slice of the label volume when asked for)."""

    uid: int
    label: str
    color: Color
    visible: bool
    label_slice: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.label_slice == self.uid


class VolumeDocument(AnnotationDocument):
    """A volume being annotated; ``labels.data`` is ``(z, y, x)`` in the volume's display orientation."""

    def __init__(self, volume: Volume, path: Path | str, threshold: float = DEFAULT_THRESHOLD,
                 labels: LabelVolume | None = None) -> None:  # fmt: skip
        super().__init__(threshold)
        self.volume = volume
        self.path = Path(path)
        self.labels = labels if labels is not None else LabelVolume.empty(volume.shape)
        if self.labels.shape != volume.shape:
            raise ValueError(f"label volume {self.labels.shape} does not match the volume {volume.shape}")
        # a new (empty) label volume has no objects: no need to scan its voxels
        self.object_list: list[VolumeObject] = objects_from_labels(labels) if labels is not None else []
        self.sessions: dict[vs.SessionKey, vs.SliceSession] = {}
        self.finished_slices: vc.FinishedSlices = {}  # where each finished object was annotated
        self.active: int | None = None
        self.axis = "axial"
        self.index = volume.slice_count("axial") // 2
        self.volume_history: History[VolumeDocument] = History()
        self.next_value = max([1, *(o.uid + 1 for o in self.object_list)])
        self.new_object_label: tuple[str, Color] = ("object", color_for_index(0))
        self._stamps = itertools.count(1)

    # ------------------------------------------------------------------ view
    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the current view's slices."""
        return slicing.view_shape(self.volume.shape, self.axis)

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
        self.events.view.emit(ViewChanged())

    def model_image(self, axis: str | None = None, index: int | None = None) -> np.ndarray:
        """HxWx3 uint8 model input of a slice (the volume's default window, ``Volume.slice_image``)."""
        return self.volume.slice_image(axis or self.axis, self.index if index is None else index)

    def label_slice(self, axis: str | None = None, index: int | None = None) -> np.ndarray:
        return self.labels.get_slice(axis or self.axis, self.index if index is None else index)

    # --------------------------------------------------------------- objects
    @property
    def objects(self) -> list[SliceObject]:
        label_slice = self.label_slice()
        return [SliceObject(o.uid, o.label, o.color, o.visible, label_slice) for o in self.object_list]

    @property
    def object_order(self) -> list[VolumeObject]:
        return self.object_list

    def activate(self, uid: int | None) -> None:
        """Make ``uid`` the object that clicks and propagation edit (None: the next click starts one)."""
        if uid is not None:
            self.object(uid)
        self.active = uid
        self.events.view.emit(ViewChanged())

    # ------------------------------------------------------------ sessions
    def session(self, value: int | None = None, axis: str | None = None, index: int | None = None,
                create: bool = False) -> vs.SliceSession | None:  # fmt: skip
        """The session of object ``value`` on slice ``index`` of ``axis`` (default: the active object on
        the slice shown); None if there is none and not ``create``."""
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

    def current_mask(self) -> np.ndarray:
        """HxW bool: the active object on the current slice."""
        if self.active is None:
            return np.zeros(self.shape, bool)
        return self.label_slice() == self.active

    def prediction_key(self) -> vs.SessionKey | None:
        """The session a prediction requested now is for (the user may go to another slice meanwhile)."""
        s = self.session()
        return s.key if s is not None else None

    def set_prediction(self, clicks: Sequence[Click], prediction: Prediction, key: object = None) -> bool:
        """Store a prediction for session ``key`` (default: the current one); True if it is now shown."""
        s = self.sessions.get(key) if key is not None else self.session()
        if s is None:
            return False
        if not s.store(list(clicks), prediction):
            return False
        self._sync(s)
        self._new_revision([PredictionChanged()])
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

    def _threshold_moved(self) -> None:
        """The current slice's session is written again at the new threshold."""
        s = self.session()
        if s is not None:
            self._sync(s)
            self._new_revision([PredictionChanged()])

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
        self._new_revision([ClicksChanged()])

    def execute(self, command: cmd.DocumentCommand) -> None:
        """Run a volume-level command (one undo step, after the newer slice commands in the undo order)."""
        self._clear_redo()
        command.stamp = next(self._stamps)
        command.do(self)
        self.volume_history.push(command)
        self._announce(command)

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

    def can_undo(self) -> bool:
        """Whether the current slice or the volume has a command to undo (the two histories merged)."""
        return self._pick("done") is not None

    def can_redo(self) -> bool:
        return self._pick("undone") is not None

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
            self._new_revision([ClicksChanged()])
        else:
            self._announce(command)
        return True

    # ------------------------------------------------------- user commands
    def _ensure_active(self) -> int:
        if self.active is None:
            label, color = self.new_object_label
            self.execute(vc.NewObject(VolumeObject(self.next_value, label, color)))
        return self.active

    def add_click(self, y: float, x: float, positive: bool) -> Click:
        click = self._new_click(y, x, positive, f"{self.axis} slice")  # before a new object is started
        s = self.session(self._ensure_active(), create=True)
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
        self.execute(vc.FinishObject(label, as_color(color)))
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
        self.execute(vc.DeleteObject(uid))

    def apply_propagation(self, value: int, axis: str, index: int, clicks: list[Click],
                          prediction: Prediction, source_mask: np.ndarray) -> None:  # fmt: skip
        """Put a propagation result on slice ``index`` of object ``value`` (undoable on that slice)."""
        self.object(value)
        self.active = value
        s = self.session(value, axis, index, create=True)
        self._execute_slice(s, cs.SetPropagated(clicks, prediction, source_mask))

    # ------------------------------------------------------- autosave
    def snapshot(self) -> VolumeSnapshot:
        """``meta`` and the arrays to save (copies: the document may change while they are written)."""
        sessions = [s for s in self.sessions.values() if s.has_content()]
        meta = {
            "version": FORMAT_VERSION,
            "volume": self.path.name,
            "shape": list(self.volume.shape),
            "volume_sha256": self.volume.digest,
            "affine": np.asarray(self.volume.affine).tolist(),
            "threshold": self.threshold,
            "next_value": self.next_value,
            "active": self.active,
            "view": [self.axis, self.index],
            "objects": [{"uid": o.uid, "label": o.label, "color": list(o.color), "visible": o.visible}
                        for o in self.object_list],
            "sessions": [{"value": s.value, "axis": s.axis, "index": s.index,
                          "clicks": clicks_to_json(s.clicks)} for s in sessions],
            "finished_slices": [{"uid": o.uid, "slices": sorted(map(list, self.finished_slices[o.uid]))}
                                for o in self.object_list if o.uid in self.finished_slices],
        }  # fmt: skip
        arrays = {"labels": self.labels.data.copy()}
        for i, s in enumerate(sessions):
            arrays[f"s{i}_base"], arrays[f"s{i}_written"] = s.base.copy(), s.written.copy()
            arrays.update(session_arrays(s, prefix=f"s{i}_"))
        name = f"{volume_stem(self.path, self.volume)}{SUFFIX}"
        return VolumeSnapshot(meta, arrays, self.revision, self.path, name, self.on_disk)

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
        self.execute(vc.ReplaceLabels(imported.data, objects_from_labels(imported)))


def objects_from_labels(labels: LabelVolume) -> list[VolumeObject]:
    """One object per label value present, named and coloured from ``labels.labels``."""
    out = []
    for value in labels.present_values():
        info = labels.labels.get(value)
        name = info.name if info is not None else f"Label {value}"
        color = as_color(info.color) if info is not None else color_for_index(value - 1)
        out.append(VolumeObject(value, name, color, info.visible if info is not None else True))
    return out
