"""Volume mode of the main window: slices on the canvas, window/level, predictions per slice, propagation.

The :class:`~isegformer_app.state.volume_document.VolumeDocument` offers the image document's
attributes for the current slice, so the main window's clicks, brush, overlay, objects panel and
undo work unchanged; this controller adds what is volume-specific. File work (open, export, import,
autosave) lives in :mod:`isegformer_app.ui.volume_files`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDockWidget, QInputDialog, QPlainTextEdit, QProgressDialog

from isegformer_app.state.propagation import PropagatedSlice, propagate_range, range_targets
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.ui.volume_actions import VOLUME_ONLY
from isegformer_app.ui.volume_files import VolumeFiles
from isegformer_app.ui.volume_panel import VolumePanel
from isegformer_app.ui.worker import PredictRequest, PredictResult
from isegformer_app.volumes import AXES, WindowPreset, apply_window

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow

WL_SENSITIVITY = 1 / 200  # fraction of the current width per screen pixel dragged


class VolumeController(QObject):
    """Owns the open volume document (None in image mode) and the volume widgets of the window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.doc: VolumeDocument | None = None
        self.display_window: WindowPreset | None = None
        self.pending: dict[int, tuple] = {}  # request id -> session key
        self.propagation: dict | None = None
        self.panel = VolumePanel()
        self.panel.setVisible(False)
        self.notes = QPlainTextEdit(readOnly=True)
        self.notes_dock = QDockWidget("Volume notes", window)
        self.notes_dock.setObjectName("volume_notes")
        self.notes_dock.setWidget(self.notes)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.notes_dock)
        self.notes_dock.setVisible(False)
        self.files = VolumeFiles(self)
        self.panel.axis_chosen.connect(lambda axis: self.show_slice(axis=axis))
        self.panel.slice_chosen.connect(lambda index: self.show_slice(index=index))
        self.panel.preset_chosen.connect(self.use_preset)
        self.panel.wl_button.toggled.connect(self._on_wl_toggled)
        self.panel.propagate.connect(self._on_propagate_button)
        window.canvas.window_dragged.connect(self.drag_window)
        window.view_panel.tool_changed.connect(lambda tool: self.panel.wl_button.setChecked(tool == "wl"))
        window.labels_panel.list.currentRowChanged.connect(lambda _row: self._on_label_class())
        window.worker.task_result.connect(self._on_propagated)
        window.worker.task_progress.connect(self._on_task_progress)
        window.worker.task_done.connect(self._on_task_done)

    @property
    def active(self) -> bool:
        return self.doc is not None

    # --------------------------------------------------------------- document
    def install(self, doc: VolumeDocument, notes: list[str]) -> None:
        """Show ``doc`` (a freshly loaded volume) in the window."""
        w = self.window
        self.close_volume()
        w.project = None
        self.doc = doc
        doc.new_object_label = (w.labels_panel.current().name, w.labels_panel.current().color)
        doc.threshold = w.view_panel.threshold.value() / 100
        doc.listeners.append(w.on_document_changed)
        presets = doc.volume.window_presets
        default = doc.volume.channel_windows[doc.volume.channel_names[0]]
        self.display_window = presets[0] if presets else default
        self.panel.set_presets(presets)
        self.panel.setVisible(True)
        w.objects_panel.set_document(doc)
        self.notes.setPlainText("\n".join(notes))
        self.notes_dock.setVisible(bool(notes))  # shown once, non-modal; the user may close it
        self._enable_actions(True)
        self.show_slice(doc.axis, doc.index, fit=True)
        name = doc.volume.description or doc.path.name
        z, y, x = doc.volume.shape
        w.inform("Open volume", f"{name}: {x}x{y}x{z} voxels, spacing "
                 + " x ".join(f"{s:.3g}" for s in doc.volume.spacing[::-1]) + " mm")  # fmt: skip

    def _enable_actions(self, enabled: bool) -> None:
        for key in VOLUME_ONLY:
            action = getattr(self.window, "actions_by_name", {}).get(key)
            if action is not None:
                action.setEnabled(enabled)

    def close_volume(self) -> None:
        self._enable_actions(False)
        if self.doc is not None:
            self.doc.listeners.clear()
        self.doc = None
        self.pending.clear()
        self.panel.setVisible(False)
        self.notes_dock.setVisible(False)
        self.window.canvas.pixel_aspect = 1.0

    # ------------------------------------------------------------------ view
    def display_image(self, axis: str, index: int) -> np.ndarray:
        """HxWx3 uint8 display of a slice with the current (display-only) window/level."""
        values = self.doc.volume.slice_values(axis, index)
        grey = apply_window(values, self.display_window)
        return np.repeat(grey[:, :, None], 3, axis=2)

    def show_slice(self, axis: str | None = None, index: int | None = None, fit: bool = False) -> None:
        """Go to slice ``index`` of ``axis`` (defaults: the current ones) and show it."""
        doc, w = self.doc, self.window
        if doc is None:
            return
        axis = axis or doc.axis
        if axis not in AXES:
            return
        if index is None:
            index = doc.index if axis == doc.axis else doc.volume.slice_count(axis) // 2
        index = int(min(max(index, 0), doc.volume.slice_count(axis) - 1))
        same_axis = axis == doc.axis
        w.canvas.set_image(self.display_image(axis, index), doc.volume.pixel_aspect(axis),
                           keep_view=same_axis and not fit)  # fmt: skip
        w.image_key = f"volume:{id(doc)}:{axis}:{index}"
        w.worker.set_image(w.image_key, doc.model_image(axis, index))
        doc.set_view(axis, index)  # notifies: the window redraws overlay and panels
        self.panel.show_view(axis, index, doc.slice_count)
        self.panel.show_window(self.display_window)
        self.request_prediction()

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
        self.window.canvas.set_image(image, doc.volume.pixel_aspect(doc.axis), keep_view=True)
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
        self.window.view_panel.set_tool("wl" if on else "click")

    # ------------------------------------------------------------ predictions
    def request_prediction(self) -> bool:
        """Send a prediction request for the current slice session if it needs one; True if sent."""
        doc, w = self.doc, self.window
        s = doc.session() if doc is not None else None
        if s is None or not s.needs_prediction():
            return False
        request_id = w.worker.request(PredictRequest(w.image_key, list(s.clicks), s.prev_mask()))
        self.pending = {k: v for k, v in self.pending.items() if k > request_id - 64}
        self.pending[request_id] = s.key
        w.busy_bar.setVisible(True)
        return True

    def on_prediction(self, result: PredictResult) -> None:
        key = self.pending.pop(result.request.request_id, None)
        if key is None or self.doc is None:
            return
        doc = self.doc

        def store() -> bool:
            return doc.set_prediction(result.request.clicks, result.prob, key)

        self.window.apply_prediction(result, store, self.request_prediction)

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
        last = doc.slice_count
        stop, ok = QInputDialog.getInt(self.window, "Propagate", f"Propagate from slice {doc.index + 1} "
                                       f"up to slice (1..{last}):", last, 1, last)  # fmt: skip
        if ok:
            self.propagate_to(stop - 1)

    def propagate_to(self, stop: int) -> bool:
        """Propagate the active (else selected) object from this slice to ``stop``, in the worker thread."""
        doc, w = self.doc, self.window
        if doc is None or self.propagation is not None:
            return False
        value = doc.active if doc.active is not None else doc.selected_uid
        source = doc.label_slice() == value if value is not None else None
        if source is None or not source.any():
            w.inform("Propagate", "Nothing to propagate: annotate (or select) an object on this slice.")
            return False
        targets = range_targets(doc.index, int(min(max(stop, 0), doc.slice_count - 1)))
        if not targets:
            w.inform("Propagate", "No slice in that direction.")
            return False
        volume, axis, threshold = doc.volume, doc.axis, doc.threshold

        def work(predictor, emit_result, emit_progress, cancel) -> int:
            return propagate_range(predictor, volume, axis, source, targets, threshold, emit_result,
                                   emit_progress, cancel)  # fmt: skip

        cancel = w.worker.run_task(work, "propagate")
        dialog = None
        if len(targets) > 1:
            dialog = QProgressDialog("Propagating…", "Cancel", 0, len(targets), w)
            dialog.setWindowTitle("Propagate")
            dialog.setWindowModality(Qt.WindowModality.WindowModal)
            dialog.setMinimumDuration(300)
            dialog.setAutoClose(False)
            dialog.setAutoReset(False)
            dialog.canceled.connect(cancel.set)
            dialog.setValue(0)
        self.propagation = {"doc": doc, "value": value, "axis": axis, "targets": targets, "cancel": cancel,
                            "dialog": dialog, "done": 0}  # fmt: skip
        w.busy_bar.setVisible(True)
        return True

    def _on_propagated(self, result: PropagatedSlice) -> None:
        p = self.propagation
        if p is None or p["doc"] is not self.doc:
            return
        self.doc.apply_propagation(p["value"], p["axis"], result.index, result.clicks, result.prob,
                                   result.source_mask)  # fmt: skip
        p["done"] += 1

    def _on_task_progress(self, done: int, total: int) -> None:
        p = self.propagation
        if p is not None and p["dialog"] is not None:
            p["dialog"].setValue(done)
            p["dialog"].setLabelText(f"Propagating: slice {done + 1}/{total}…")

    def _on_task_done(self, label: str, result: object, error: str) -> None:
        if label != "propagate" or self.propagation is None:
            return
        p, self.propagation = self.propagation, None
        cancelled = p["cancel"].is_set()
        if p["dialog"] is not None:
            p["dialog"].canceled.disconnect(p["cancel"].set)  # closing the dialog emits ``canceled``
            p["dialog"].close()
            p["dialog"].deleteLater()
        w = self.window
        if error:
            w.inform("Propagate", f"Propagation failed: {error}", error=True)
            return
        if p["doc"] is not self.doc:
            return
        stopped = " (cancelled)" if cancelled else ""
        w.inform("Propagate", f"Propagated to {p['done']} of {len(p['targets'])} slice(s){stopped}.")
        if len(p["targets"]) == 1 and p["done"] == 1:
            self.show_slice(index=p["targets"][0])  # show the new slice, ready for correction clicks

    def _on_label_class(self) -> None:
        if self.doc is not None:
            cls = self.window.labels_panel.current()
            self.doc.new_object_label = (cls.name, cls.color)

    def edit_selected(self) -> None:
        """Make the selected object the active one: clicks and propagation now edit it."""
        doc = self.doc
        if doc is None or doc.selected_uid is None:
            self.window.inform("Edit object", "Select an object in the Objects panel first.")
            return
        doc.activate(doc.selected_uid)
        label = doc.object(doc.selected_uid).label
        self.window.inform("Edit object", f"Clicks now edit object {doc.selected_uid} ({label}).")
