"""The main window: wires the canvas and panels to the project state and the inference worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from isegformer_app.settings import Settings
from isegformer_app.state.autosave import snapshot_document, write_snapshot
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import DEFAULT_MAX_SIDE, IMAGE_EXTENSIONS, ImageLoadError
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.ui import dialogs
from isegformer_app.ui.actions import build_menus
from isegformer_app.ui.canvas import CanvasView
from isegformer_app.ui.model_control import EngineFactories, ModelControl
from isegformer_app.ui.overlay import render_overlay
from isegformer_app.ui.panels import LabelsPanel, ObjectsPanel, ViewPanel
from isegformer_app.ui.tasks import SidecarWriter, finish_tasks
from isegformer_app.ui.volume_control import VolumeController
from isegformer_app.ui.volume_files import looks_like_volume
from isegformer_app.ui.worker import InferenceWorker, PredictRequest, PredictResult
from resources import SAMPLE_IMAGE

AUTOSAVE_DELAY_MS = 1500


class MainWindow(QMainWindow):
    """The annotation window.

    ``engines`` None = the built-in engines of :mod:`model.engines` (tests pass fakes);
    ``sidecar_dir`` None = autosave beside the images; ``max_side`` = working-size limit of images.

    ``prediction_shown(request_id)`` is emitted once a prediction is in the canvas scene (it is painted
    with the next repaint of the view).
    """

    prediction_shown = Signal(int)

    def __init__(
        self,
        settings: Settings | None = None,
        engines: EngineFactories | None = None,
        sidecar_dir: Path | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings.load()
        self.labels = LabelList.from_json(self.settings.labels)
        # autosaves go beside the files, or to the per-user folder (read-only folders, the bundled sample)
        self.sidecars = SidecarLocator(sidecar_dir, redirect_always=(SAMPLE_IMAGE.parent,))
        self.max_side = max_side
        self.project: Project | None = None
        self.image_key = ""
        self.last_latency_ms: float | None = None
        self._hold_refresh = False  # True while add_click defers the redraw until the request is sent
        self.setWindowTitle("isegformer")
        self.resize(1280, 820)

        self.canvas = CanvasView()
        self.objects_panel = ObjectsPanel(self.labels)
        self.labels_panel = LabelsPanel(self.labels)
        s = self.settings
        self.view_panel = ViewPanel(s.opacity, s.threshold, s.brush_radius)
        side = QWidget()
        side.setFixedWidth(300)
        side_layout = QVBoxLayout(side)
        for panel in (self.view_panel, self.labels_panel, self.objects_panel):
            side_layout.addWidget(panel)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.canvas, 1)
        row.addWidget(side)
        self.setCentralWidget(central)

        self.message_label = QLabel("Open an image or a folder (File menu).")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setFixedWidth(90)
        self.busy_bar.setVisible(False)
        self.latency_label = QLabel("no prediction yet")
        self.statusBar().addWidget(self.message_label, 1)
        self.statusBar().addPermanentWidget(self.busy_bar)
        self.statusBar().addPermanentWidget(self.latency_label)

        self.worker = InferenceWorker(self, threads=self.settings.inference_threads)
        self.worker.prediction_ready.connect(self._on_prediction)
        self.worker.busy_changed.connect(self._on_busy)
        self.worker.failed.connect(self._on_worker_failed)
        self.models = ModelControl(self.worker, self.settings, engines)
        self.models.source_changed.connect(self._on_source)
        self.models.load_failed.connect(lambda msg: self.inform("Model", msg, error=True))
        self.engine_text = "no model"
        self.volume = VolumeController(self)  # volume mode (DICOM / NIfTI); inactive until one is opened
        side_layout.insertWidget(0, self.volume.panel)

        self.actions_by_name = build_menus(self)
        self.canvas.clicked.connect(self.add_click)
        self.canvas.stroke_finished.connect(self.brush_stroke)
        self.view_panel.opacity.valueChanged.connect(lambda _v: self.refresh())
        self.view_panel.threshold.valueChanged.connect(self._on_threshold)
        self.view_panel.brush.valueChanged.connect(self._on_brush_radius)
        self.view_panel.tool_changed.connect(self._on_tool)
        self.labels_panel.changed.connect(self._on_labels_changed)
        self._on_brush_radius(self.view_panel.brush.value())
        self.autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.sidecar_writer = SidecarWriter(self, self.sidecars, self.inform)  # both modes, one at a time
        dialogs.fill_recent_menu(self)
        self.worker.start()
        QApplication.instance().aboutToQuit.connect(self.worker.stop)
        self.models.start()
        if self.settings.problem:
            self.inform("Settings", self.settings.problem)

    # ------------------------------------------------------------ helpers
    @property
    def doc(self) -> Document | None:
        """The open image's document, or in volume mode the volume document (shown slice by slice)."""
        if self.volume.doc is not None:
            return self.volume.doc
        return self.project.doc if self.project else None

    def inform(self, title: str, text: str, error: bool = False) -> None:
        """Show a message: a dialog for errors, the status bar for notices."""
        self.message_label.setText(text.splitlines()[0] if text else "")
        if error:
            QMessageBox.warning(self, title, text)

    # ------------------------------------------------------------ opening
    def open_path(self, path: str | Path) -> bool:
        """Open an image file or a folder of images; False (with a message) if impossible.

        A NIfTI file or a folder without images (DICOM) is opened as a volume, in the background.
        """
        path = Path(path)
        if path.exists() and looks_like_volume(path):
            return self.volume.files.open(path) is not None
        try:
            project = Project.from_path(path, locator=self.sidecars, max_side=self.max_side,
                                        threshold=self.view_panel.threshold.value() / 100)  # fmt: skip
        except ValueError as exc:
            self.inform("Open", str(exc), error=True)
            return False
        old = self.project
        if (old is not None or self.volume.active) and not self._save_or_warn():
            return False
        self.volume.close_volume()
        self.project = project
        if not self._open_with(Project.open_first, "Open folder"):
            self.project = old
            return False
        self.settings.add_recent(path)
        dialogs.fill_recent_menu(self)
        return True

    def show_index(self, index: int) -> bool:
        """Open image ``index`` of the project; False (with a message) if it cannot be read."""
        return self._open_with(lambda project: project.open_index(index), "Open image")

    def _open_with(self, opener, title: str) -> bool:
        """Run ``opener(project)`` (returns the Document, or None = nothing more) and show its result."""
        try:
            doc = opener(self.project)
        except ImageLoadError as exc:
            self.inform(title, str(exc), error=True)
            return False
        except OSError as exc:
            self.inform("Autosave", f"Could not save the previous image's annotations: {exc}", error=True)
            return False
        if doc is None:
            notices = "".join(f" {n}." for n in self.project.notices)
            self.inform("Navigate", "No more readable images in this direction." + notices)
            return False
        self.autosave_timer.stop()
        doc.listeners.append(self.on_document_changed)
        self.image_key = f"{doc.path}#{id(doc)}"
        self.canvas.set_image(doc.image.rgb)
        self.worker.set_image(self.image_key, doc.image.rgb)
        self.objects_panel.set_document(doc)
        n = len(self.project.paths)
        notices = "".join(f" — {n}" for n in self.project.notices)
        self.inform("Open", f"{doc.path.name} ({self.project.index + 1}/{n}){notices}")
        self.refresh()
        self._request_prediction()
        return True

    def next_image(self) -> None:
        self._step(+1)

    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        if self.project is None:
            return
        self._open_with(lambda project: project.step(delta), "Navigate")

    def open_image_dialog(self) -> None:
        pattern = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", f"Images ({pattern});;All files (*)")
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of images")
        if path:
            self.open_path(path)

    # ------------------------------------------------------------ editing
    def add_click(self, y: float, x: float, positive: bool) -> None:
        """Add a click and send the prediction request *before* redrawing anything.

        While the prediction runs only the click dots and panels are updated; the overlay keeps the
        previous prediction until the new one arrives (:meth:`_on_prediction` redraws it).
        """
        doc = self.doc
        if doc is None:
            return
        self._hold_refresh = True
        try:
            doc.add_click(y, x, positive)
        finally:
            self._hold_refresh = False
        requested = self._request_prediction()
        self.refresh(overlay=not requested)

    def brush_stroke(self, points: list, erase: bool) -> None:
        if self.doc is not None:
            self.doc.brush_stroke(points, self.canvas.brush_radius, erase, self.doc.selected_uid)

    def finish_object(self) -> None:
        if self.doc is None:
            return
        cls = self.labels_panel.current()
        if self.doc.finish_object(cls.name, cls.color) is None:
            self.inform("Finish", "Nothing to finish: click on the object first.")

    def reset_clicks(self) -> None:
        """Esc: drop the current object's clicks and corrections; with none, clear the selection."""
        if self.doc is None:
            return
        if self.doc.has_current():
            self.doc.reset_clicks()
        elif self.doc.selected_uid is not None:
            self.doc.selected_uid = None
            self.doc.notify()

    def undo(self) -> None:
        if self.doc is not None and self.doc.undo():
            self._request_prediction()

    def redo(self) -> None:
        if self.doc is not None and self.doc.redo():
            self._request_prediction()

    def _request_prediction(self) -> bool:
        """Send a prediction request if the current clicks need one; True if one was sent."""
        if self.volume.active:
            return self.volume.request_prediction()
        doc = self.doc
        if doc is not None and doc.needs_prediction():
            self.worker.request(PredictRequest(self.image_key, list(doc.clicks), doc.prev_mask_for_request()))
            self.busy_bar.setVisible(True)
            return True
        return False

    # ------------------------------------------------------------ worker
    def _on_prediction(self, result: PredictResult) -> None:
        if self.volume.active:
            self.volume.on_prediction(result)
            return
        if result.request.image_key != self.image_key or self.doc is None:
            return
        doc = self.doc
        self.apply_prediction(
            result, lambda: doc.set_prediction(result.request.clicks, result.prob), self._request_prediction
        )

    def apply_prediction(
        self, result: PredictResult, store: Callable[[], bool], request_again: Callable[[], object]
    ) -> None:
        """Image and volume mode alike: show the latency, ``store()`` the map in the document (True if
        it is now on screen), announce it, and ask again when this answered the newest request (e.g.
        undo moved to click lists that were coalesced away)."""
        self.last_latency_ms = result.latency_ms
        self.latency_label.setText(f"{result.latency_ms:.0f} ms · {self.engine_text}")
        try:
            shown = store()
        except ValueError as exc:
            self.inform("Prediction", f"The model returned a wrong-size mask: {exc}", error=True)
            self.refresh()
            return
        if shown:
            self.prediction_shown.emit(result.request.request_id)
        if result.request.request_id == self.worker.latest_request_id():
            request_again()

    def _on_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)

    def _on_worker_failed(self, what: str, message: str) -> None:
        if what == "predict":
            self.refresh()  # add_click left the previous overlay up while waiting for this prediction
        if what != "engine":
            self.inform("Model", message, error=what == "image")

    def _on_source(self, text: str) -> None:
        self.engine_text = text
        self.latency_label.setText(text if self.last_latency_ms is None else
                                   f"{self.last_latency_ms:.0f} ms · {text}")  # fmt: skip
        name = self.models.active[1]
        act = self.actions_by_name.get(f"engine_{name}")
        if act is not None:
            act.setChecked(True)

    def load_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", self.settings.last_checkpoint,
                                              "Checkpoints (*.pth *.pt);;All files (*)")  # fmt: skip
        if path:
            self.models.load_checkpoint(path)

    def set_device(self, device: str) -> None:
        if not self.models.set_device(device):
            self.actions_by_name["device_cpu"].setChecked(True)

    # ------------------------------------------------------------ view
    def on_document_changed(self, _doc: object = None) -> None:
        """Listener of the open document: redraw (unless :meth:`add_click` redraws after its request)."""
        if not self._hold_refresh:
            self.refresh()

    def refresh(self, overlay: bool = True) -> None:
        """Redraw the canvas overlay (unless ``overlay`` is False), the click dots, panels and actions."""
        doc = self.doc
        if doc is None:
            return
        if overlay:
            self.canvas.set_overlay(render_overlay(doc, self.view_panel.opacity.value() / 100))
        self.canvas.set_clicks(doc.clicks)
        self.objects_panel.refresh()
        self.actions_by_name["undo"].setEnabled(doc.history.can_undo())
        self.actions_by_name["redo"].setEnabled(doc.history.can_redo())
        self.setWindowTitle(f"{doc.path.name}{' *' if doc.dirty else ''} — isegformer")
        if doc.dirty and not self.autosave_timer.isActive():
            # at most AUTOSAVE_DELAY_MS after the first unsaved change, however busy the user keeps
            # clicking (restarting the timer on every change would never let it fire)
            self.autosave_timer.start()

    def _on_threshold(self, value: int) -> None:
        if self.project is not None:
            self.project.threshold = value / 100
        if self.doc is not None:
            self.doc.threshold = value / 100
            if self.volume.active:
                self.volume.doc.resync()  # the label volume follows the threshold of the current slice
            self.refresh()

    def _on_brush_radius(self, value: int) -> None:
        self.canvas.brush_radius = value

    def _on_tool(self, name: str) -> None:
        self.canvas.tool = name

    def _on_labels_changed(self) -> None:
        self.settings.labels = self.labels.to_json()
        self.objects_panel.refresh()

    # ------------------------------------------------------------ saving
    def autosave(self) -> None:
        """Timer: write the open document's sidecar in the background (one write at a time); the
        document is copied now, compression and the atomic, fsynced write run off the GUI thread."""
        if self.volume.active:
            self.volume.files.save()
            return
        project = self.project
        doc = project.doc if project is not None else None
        if doc is None or not doc.dirty:
            return
        if self.sidecar_writer.busy:
            self.autosave_timer.start()  # try again once the running write is done
            return
        snapshot = snapshot_document(doc)

        def saved() -> None:
            doc.saved_revision = max(doc.saved_revision, snapshot.revision)
            if doc is self.doc:
                self.refresh(overlay=False)

        self.sidecar_writer.write(lambda path: write_snapshot(snapshot, path),
                                  lambda: project.sidecar_for(doc.path), doc.path.parent, saved)

    def wait_for_autosave(self) -> None:
        """Let a background autosave finish (before a synchronous save of the same file)."""
        self.sidecar_writer.wait()

    def save_now(self) -> bool:
        """Write the autosave sidecar of the open image; False (with a message) on failure.

        In volume mode the sidecar is written in the background (a copy of the labels is taken now).
        """
        if self.volume.active:
            return self.volume.files.save()
        if self.project is None:
            return True
        self.wait_for_autosave()
        try:
            self.project.save()
        except OSError as exc:
            self.inform("Autosave", f"Could not write the autosave file: {exc}", error=True)
            return False
        self.refresh()
        return True

    def _save_or_warn(self) -> bool:
        return self.save_now()

    def export_dialog(self, all_images: bool = True) -> None:
        if self.volume.active:
            self.volume.files.export_nifti_dialog()
            return
        dialogs.export_with_dialog(self, all_images)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.volume.active and self.volume.doc.dirty:
            answer = dialogs.ask_unsaved(self)
            if answer != "discard":
                if answer == "save":  # written in the background; the window closes when it is done
                    self.volume.files.save(then=self.close)
                event.ignore()
                return
        elif self.doc is not None and self.doc.dirty and not dialogs.confirm_close(self):
            event.ignore()
            return
        self.settings.opacity = self.view_panel.opacity.value() / 100
        self.settings.threshold = self.view_panel.threshold.value() / 100
        self.settings.brush_radius = self.view_panel.brush.value()
        self.settings.labels = self.labels.to_json()
        try:
            self.settings.save()
        except OSError as exc:
            self.inform("Settings", f"Could not save settings: {exc}")
        finish_tasks(self)
        self.worker.stop()
        event.accept()

