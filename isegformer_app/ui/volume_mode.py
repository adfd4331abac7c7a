"""Volume mode of the window: slices on the canvas, window/level, predictions per slice, propagation.

The :class:`~isegformer_app.state.volume_document.VolumeDocument` is an annotation document shown one
slice at a time, so the window's clicks, brush, overlay, objects panel and undo work unchanged; this
mode adds what is volume-specific. File work (open, export, import, autosave) lives in
:mod:`isegformer_app.ui.volume_files`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDockWidget, QInputDialog, QPlainTextEdit

from isegformer_app.state.finetune_job import TrainingSource, volume_source
from isegformer_app.state.labels import DataKind
from isegformer_app.state.project_labels import project_labels_path
from isegformer_app.state.propagation import PropagatedSlice, PropagationPlan, plan_propagation
from isegformer_app.state.volume_autosave import volume_stem
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.ui import dialogs
from isegformer_app.ui.modes import WindowServices
from isegformer_app.ui.prediction_link import PredictionLink
from isegformer_app.ui.tasks import BackgroundTask, TaskProgress
from isegformer_app.ui.volume_files import VolumeFiles
from isegformer_app.ui.volume_panel import VolumePanel
from isegformer_app.volumes import AXES, WindowPreset, apply_window
from isegformer_app.volumes.slicing import array_axis, view_to_voxel, voxel_to_view

WL_SENSITIVITY = 1 / 200  # fraction of the current width per screen pixel dragged
# the actions enabled while a volume is open (arrow keys pan images otherwise)
VOLUME_ONLY = ("import_labels", "export_nifti", "export_slices", "axial", "coronal", "sagittal", "slice_up",
               "slice_down", "slice_page_up", "slice_page_down", "propagate_next", "propagate_prev",
               "propagate_range", "wl_mode", "edit_object")


@dataclass
class _Propagation:
    """A propagation running in the worker: its tested plan, cancel flag, progress dialog, slices done."""

    plan: PropagationPlan
    cancel: threading.Event
    dialog: TaskProgress | None
    done: int = 0


class VolumeMode(QObject):
    """Owns the open volume document (None while images are shown) and the volume widgets."""

    data_kind: DataKind = "volumes"

    def __init__(self, services: WindowServices) -> None:
        super().__init__(services.parent)
        self.services = s = services
        window = services.parent
        self.doc: VolumeDocument | None = None
        self.predictions = PredictionLink(services.worker, services.inform, services.show_busy, self,
                                          lambda: services.settings.local_edits)  # fmt: skip
        self.display_window: WindowPreset | None = None
        self.propagation: _Propagation | None = None  # the one running, if any
        self.panel = VolumePanel()
        self.panel.setVisible(False)
        self.notes = QPlainTextEdit(readOnly=True)
        self.notes_dock = QDockWidget("Volume notes", window)
        self.notes_dock.setObjectName("volume_notes")
        self.notes_dock.setWidget(self.notes)
        # beside the canvas, under the Files dock: below it the notes would take the side panels' height
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.notes_dock)
        self.notes_dock.setVisible(False)
        self.files = VolumeFiles(services, lambda: self.doc, self.install)
        self.panel.axis_chosen.connect(lambda axis: self.show_slice(axis=axis))
        self.panel.slice_chosen.connect(lambda index: self.show_slice(index=index))
        self.panel.preset_chosen.connect(self.use_preset)
        self.panel.wl_button.toggled.connect(self._on_wl_toggled)
        self.panel.propagate.connect(self._on_propagate_button)
        self.panel.frame_chosen.connect(self.show_frame)
        s.canvas.window_dragged.connect(self.drag_window)
        self.point: tuple[int, int, int] | None = None  # (z, y, x) linked between views: last hovered
        s.view.tool_changed.connect(lambda tool: self.panel.wl_button.setChecked(tool == "wl"))
        s.labels.list.currentRowChanged.connect(lambda _row: self._on_label_class())
        s.worker.task_result.connect(self._on_propagated)
        s.worker.task_progress.connect(self._on_task_progress)
        s.worker.task_done.connect(self._on_task_done)

    @property
    def active(self) -> bool:
        return self.doc is not None

    @property
    def image_key(self) -> str:
        """The key the worker knows the shown slice by."""
        return self.predictions.image_key

    # --------------------------------------------------------------- document
    def install(self, doc: VolumeDocument, notes: list[str]) -> None:
        """Show ``doc`` (a freshly loaded volume) in the window; the volume or image left is autosaved."""
        s = self.services
        s.activate(self)  # closes image mode (its autosave is written in the background)
        self.deactivate()  # the volume shown until now, if any
        self.doc = doc
        s.project_opened()
        doc.new_object_label = (s.labels.current().name, s.labels.current().color)
        presets = doc.volume.window_presets
        default = doc.volume.channel_windows[doc.volume.channel_names[0]]
        self.display_window = presets[0] if presets else default
        self.panel.set_presets(presets)
        meta = doc.volume.metadata
        self.panel.show_frames(int(meta.get("frame") or 0), int(meta.get("frames") or 1))
        self.panel.setVisible(True)
        self.predictions.attach(doc)  # first: a click's request goes out before anything is drawn
        s.show_document(doc)
        self.notes.setPlainText("\n".join(notes))
        self.notes_dock.setVisible(bool(notes))  # shown once, non-modal; the user may close it
        self._enable_actions(True)
        axis = doc.volume.acquisition_axis()  # the file's own slices, at their full resolution
        self.show_slice(axis, doc.index if axis == doc.axis else doc.volume.slice_count(axis) // 2, fit=True)
        name = doc.volume.description or doc.path.name
        z, y, x = doc.volume.shape
        s.inform("Open volume", f"{name}: {x}x{y}x{z} voxels, spacing "
                 + " x ".join(f"{s:.3g}" for s in doc.volume.spacing[::-1]) + " mm")  # fmt: skip

    def show_frame(self, frame: int) -> BackgroundTask | None:
        """Open another frame of the shown 4-D file (this frame is autosaved; each has its own autosave)."""
        doc = self.doc
        if doc is None or frame == int(doc.volume.metadata.get("frame") or 0):
            return None
        return self.files.open(doc.path, frame=frame)

    def _enable_actions(self, enabled: bool) -> None:
        for key in VOLUME_ONLY:
            action = self.services.actions.get(key)
            if action is not None:
                action.setEnabled(enabled)

    def deactivate(self) -> None:
        """Images (or another volume) are shown now: autosave this volume in the background, close it."""
        self.autosave()
        self.close_volume()

    def close_volume(self) -> None:
        """Let go of the volume (unsaved changes are dropped: :meth:`deactivate` saves first)."""
        self._enable_actions(False)
        if self.doc is not None:
            self.doc.events.disconnect_all()
        self.doc = None
        self.predictions.attach(None)
        self.panel.setVisible(False)
        self.notes_dock.setVisible(False)
        self.point = None
        self.services.canvas.set_crosshair(None)
        self.services.canvas.pixel_aspect = 1.0

    # ------------------------------------------------------------------ view
    def display_image(self, axis: str, index: int) -> np.ndarray:
        """HxWx3 uint8 display of a slice with the current (display-only) window/level."""
        values = self.doc.volume.slice_values(axis, index)
        grey = apply_window(values, self.display_window)
        return np.repeat(grey[:, :, None], 3, axis=2)

    def show_slice(self, axis: str | None = None, index: int | None = None, fit: bool = False) -> None:
        """Go to slice ``index`` of ``axis`` (defaults: the current ones) and show it."""
        doc, s = self.doc, self.services
        if doc is None:
            return
        axis = axis or doc.axis
        if axis not in AXES:
            return
        if index is None and axis != doc.axis and self.point is not None:
            index = self.point[array_axis(axis)]  # the slice through the point seen in the other view
        if index is None:
            index = doc.index if axis == doc.axis else doc.volume.slice_count(axis) // 2
        index = int(min(max(index, 0), doc.volume.slice_count(axis) - 1))
        if (axis, index) != (doc.axis, doc.index):
            s.inform("Slice", "")  # messages about the slice left behind go with it
        same_axis = axis == doc.axis
        s.canvas.set_image(self.display_image(axis, index), doc.volume.pixel_aspect(axis),
                           keep_view=same_axis and not fit)  # fmt: skip
        self.predictions.attach(doc, f"volume:{id(doc)}:{axis}:{index}")
        s.worker.set_image(self.image_key, doc.model_image(axis, index))
        doc.set_view(axis, index)  # its ViewChanged redraws the overlay
        self.panel.show_view(axis, index, doc.slice_count)
        self.panel.slice_label.setText(doc.volume.slice_caption(axis, index))
        self.panel.show_window(self.display_window)
        self._show_crosshair()
        self.request_prediction()

    def labels_file(self) -> Path | None:
        """This volume's label list, beside its autosave (shared by the frames of a 4-D file)."""
        doc = self.doc
        if doc is None:
            return None
        stem = volume_stem(doc.path, doc.volume, with_frame=False)
        return project_labels_path(self.services.sidecars.folder_for(doc.path.parent), stem)

    def training_source(self) -> TrainingSource | None:
        """This volume's finished objects on the slices they were annotated on; its models beside its
        autosave."""
        doc = self.doc
        if doc is None:
            return None
        return volume_source(doc, self.services.sidecars.folder_for(doc.path.parent))

    # ---------------------------------------------------------------- cursor
    def on_hover(self, row: float, col: float) -> None:
        """The cursor is over view pixel (row, col) ((-1, -1): off the image): show its voxel, file
        index, RAS position and value; the voxel becomes the point linked between the views."""
        doc = self.doc
        if doc is None or row < 0:
            self.services.show_cursor("")
            return
        vol = doc.volume
        z, y, x = view_to_voxel(vol.shape, doc.axis, doc.index, int(row), int(col))
        self.point = (z, y, x)
        self.services.show_cursor(vol.describe_voxel(z, y, x))

    def _show_crosshair(self) -> None:
        """Mark the linked point in the shown view (it was set while another view was shown)."""
        doc = self.doc
        point = self.point
        if doc is None or point is None or point[array_axis(doc.axis)] != doc.index:
            self.services.canvas.set_crosshair(None)
            return
        self.services.canvas.set_crosshair(voxel_to_view(doc.volume.shape, doc.axis, point))

    def step_slice(self, delta: int) -> None:
        if self.doc is not None:
            self.show_slice(index=self.doc.index + delta)

    def use_preset(self, position: int) -> None:
        presets = self.doc.volume.window_presets if self.doc else []
        if 0 <= position < len(presets):
            self.set_display_window(presets[position])

    def set_display_window(self, window: WindowPreset) -> None:
        """Change the displayed window/level (the model input keeps the volume's default window)."""
        self.display_window = window
        doc = self.doc
        image = self.display_image(doc.axis, doc.index)
        self.services.canvas.set_image(image, doc.volume.pixel_aspect(doc.axis), keep_view=True)
        self.panel.show_window(window)

    def drag_window(self, dx: float, dy: float) -> None:
        """Drag right: wider window; drag down: higher level (both scaled by the current width)."""
        if self.doc is None or self.display_window is None:
            return
        current = self.display_window
        step = current.width * WL_SENSITIVITY
        width = max(1e-3, current.width + dx * step)
        self.set_display_window(WindowPreset("custom", current.center + dy * step, width))

    def _on_wl_toggled(self, on: bool) -> None:
        self.services.view.set_tool("wl" if on else "click")

    # ------------------------------------------------------------ predictions
    def request_prediction(self) -> bool:
        """Send a prediction request for the current slice session if it needs one; True if sent."""
        return self.predictions.request()

    # ---------------------------------------------------------------- saving
    def autosave(self) -> None:
        """Write the volume's autosave in the background if it changed (a copy is taken now)."""
        if self.doc is not None:
            self.services.writer.save(self.doc)

    def save(self, then: Callable[[], object] | None = None) -> bool:
        """Autosave in the background (a copy of the labels is taken now); ``then()`` after the write."""
        if self.doc is not None:
            self.services.writer.save(self.doc, then, dialog=then is not None)
        elif then is not None:
            then()
        return True

    def export_dialog(self, all_images: bool = True) -> None:
        self.files.export_nifti_dialog()

    def close_check(self, close_again: Callable[[], object]) -> bool:
        """Ask about unsaved labels; "save" writes in the background and closes the window afterwards."""
        if self.doc is None or not self.doc.dirty:
            return True
        answer = dialogs.ask_unsaved(self.services.parent, self.doc)
        if answer == "save":
            self.save(then=close_again)  # closes once written
        return answer == "discard"

    # ------------------------------------------------------------ propagation
    def _on_propagate_button(self, name: str) -> None:
        if name == "range":
            self.propagate_range_dialog()
        else:
            self.propagate_to(self.doc.index + (1 if name == "next" else -1) if self.doc else 0)

    def propagate_range_dialog(self) -> None:
        doc = self.doc
        if doc is None:
            return
        vol, axis = doc.volume, doc.axis
        name, first = vol.file_slice(axis, 0)
        last = vol.file_slice(axis, doc.slice_count - 1)[1]  # the slices are named as in the panel
        here = vol.slice_caption(axis, doc.index).replace("Slice", "slice", 1)
        stop, ok = QInputDialog.getInt(self.services.parent, "Propagate",
                                       f"Propagate from {here} up to slice {name} =", last,
                                       min(first, last), max(first, last))  # fmt: skip
        if ok:
            self.propagate_to(vol.view_index(axis, stop))

    def propagate_to(self, stop: int) -> bool:
        """Propagate the active (else selected) object from this slice to ``stop``, in the worker thread
        (:func:`~isegformer_app.state.propagation.plan_propagation`: the same steps as the tested
        ``propagate_document``, the predictions off the GUI thread)."""
        doc, s = self.doc, self.services
        if doc is None or self.propagation is not None:
            return False
        try:
            plan = plan_propagation(doc, stop)
        except ValueError as exc:
            s.inform("Propagate", str(exc))
            return False
        def work(predictor, emit_result, report, cancel) -> int:
            return plan.run(predictor, emit_result, report, cancel)

        cancel = s.worker.run_task(work, "propagate")
        dialog = TaskProgress(s.parent, "Propagate", cancel.set) if len(plan.targets) > 1 else None
        self.propagation = _Propagation(plan, cancel, dialog)
        s.show_busy(True)
        return True

    def _on_propagated(self, result: PropagatedSlice) -> None:
        p = self.propagation
        if p is None or p.plan.doc is not self.doc:
            return
        p.plan.apply(result)
        p.done += 1

    def _on_task_progress(self, fraction: float, message: str) -> None:
        p = self.propagation
        if p is not None and p.dialog is not None:
            p.dialog.advance(fraction, message)

    def _on_task_done(self, label: str, result: object, error: str) -> None:
        if label != "propagate" or self.propagation is None:
            return
        p, self.propagation = self.propagation, None
        cancelled = p.cancel.is_set()
        if p.dialog is not None:
            p.dialog.close()
        if error:
            self.services.inform("Propagate", f"Propagation failed: {error}", error=True)
            return
        if p.plan.doc is not self.doc:
            return
        stopped = " (cancelled)" if cancelled else ""
        targets = p.plan.targets
        if len(targets) == 1 and p.done == 1:
            self.show_slice(index=targets[0])  # show the new slice, ready for correction clicks
        self.services.inform("Propagate", f"Propagated to {p.done} of {len(targets)} slice(s){stopped}.")

    def _on_label_class(self) -> None:
        if self.doc is not None:
            cls = self.services.labels.current()
            self.doc.new_object_label = (cls.name, cls.color)

    def edit_selected(self) -> None:
        """Make the selected object the active one: clicks and propagation now edit it."""
        doc = self.doc
        if doc is None or doc.selected_uid is None:
            self.services.inform("Edit object", "Select an object in the Objects panel first.")
            return
        doc.activate(doc.selected_uid)
        label = doc.object(doc.selected_uid).label
        self.services.inform("Edit object", f"Clicks now edit object {doc.selected_uid} ({label}).")
