"""The main window: wires the canvas and panels to the project state and the inference worker."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from isegformer_app.settings import Settings
from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.events import ThresholdChanged
from isegformer_app.state.imageio import DEFAULT_MAX_SIDE, IMAGE_EXTENSIONS
from isegformer_app.state.labels import LABEL_PRESETS, DataKind, LabelClass, LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.project_labels import (
    LabelsSeen,
    ProjectLabels,
    ProjectLabelsError,
    read_project_labels,
    write_project_labels,
)
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.ui import dialogs
from isegformer_app.ui.actions import build_menus, show_about, show_shortcut_sheet
from isegformer_app.ui.autosave_timer import AutosaveTimer
from isegformer_app.ui.canvas import CanvasView
from isegformer_app.ui.canvas_input import CanvasInput
from isegformer_app.ui.document_view import DocumentView
from isegformer_app.ui.image_mode import ImageMode
from isegformer_app.ui.model_control import EngineFactories, ModelControl, preload_inference_stack
from isegformer_app.ui.modes import Mode, WindowServices
from isegformer_app.ui.panels import LabelsPanel, ObjectsPanel, SidePanels, ViewPanel
from isegformer_app.ui.status_line import ElidedLabel, separator
from isegformer_app.ui.tasks import SidecarWriter, finish_tasks
from isegformer_app.ui.training_run import ProjectTraining
from isegformer_app.ui.volume_files import looks_like_volume
from isegformer_app.ui.volume_mode import VolumeMode
from isegformer_app.ui.worker import InferenceWorker, PredictResult
from resources import SAMPLE_IMAGE

AUTOSAVE_DELAY_MS = 1500
log = logging.getLogger("isegformer")


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
        self.labels = LabelList.default_for("photos", self.settings.labels)
        self._selected_label = ""  # the open project's selected class, as last written
        self._showing_labels = False  # the label panel is being refilled (its selection is not the user's)
        # each project's label file as last read or written here (a write may finish after a switch)
        self.labels_seen: dict[Path, LabelsSeen] = {}
        # autosaves go beside the files, or to the per-user folder (read-only folders, the bundled sample)
        self.sidecars = SidecarLocator(sidecar_dir, redirect_always=(SAMPLE_IMAGE.parent,))
        self.last_latency_ms: float | None = None
        self.setWindowTitle("isegformer")
        self.resize(1280, 820)

        self.canvas = CanvasView()
        self.objects_panel = ObjectsPanel(self.labels)
        self.labels_panel = LabelsPanel(self.labels)
        s = self.settings
        self.view_panel = ViewPanel(s.opacity, s.threshold, s.brush_radius)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        for panel in (self.view_panel, self.labels_panel, self.objects_panel):
            side_layout.addWidget(panel)
        self.side_panels = SidePanels(side)  # scrolls when the window is too short: panels never clip
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.canvas, 1)
        row.addWidget(self.side_panels)
        self.setCentralWidget(central)

        self.message_label = ElidedLabel("Open an image or a folder (File menu).")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setFixedWidth(90)
        self.busy_bar.setVisible(False)
        self.latency_label = QLabel("no prediction yet")
        self.cursor_label = QLabel("")  # what is under the mouse: pixel / voxel, position, value
        self.statusBar().addWidget(self.message_label, 1)
        for widget in (separator(), self.cursor_label, separator(), self.busy_bar, self.latency_label):
            self.statusBar().addPermanentWidget(widget)

        # the real engines' imports at start-up, before the first image (injected engines need none)
        preload = preload_inference_stack if engines is None else None
        self.worker = InferenceWorker(self, threads=self.settings.inference_threads, preload=preload)
        self.worker.prediction_ready.connect(self._show_latency)  # the result itself goes to its mode
        self.worker.busy_changed.connect(self._on_busy)
        self.worker.failed.connect(self._on_worker_failed)
        self.models = ModelControl(self.worker, self.settings, engines)
        self.models.source_changed.connect(self._on_source)
        self.models.load_failed.connect(lambda msg: self.inform("Model", msg, error=True))
        self.engine_text = "no model"
        self.sidecar_writer = SidecarWriter(self, self.sidecars, self.inform)  # both modes
        services = WindowServices(
            parent=self, settings=self.settings, canvas=self.canvas, worker=self.worker, view=self.view_panel,
            labels=self.labels_panel, objects=self.objects_panel, sidecars=self.sidecars,
            writer=self.sidecar_writer, inform=self.inform, show_busy=self.busy_bar.setVisible,
            show_document=self.show_document, activate=self._activate, remember_recent=self._remember_recent,
            start_dir=self.start_dir, export_dir=self.export_dir, show_cursor=self.cursor_label.setText,
            project_opened=self._load_project_labels,
        )  # fmt: skip
        self.images = ImageMode(services, max_side)  # photos: a folder or one image
        self.volume = VolumeMode(services)  # DICOM / NIfTI volumes
        self.mode: Mode = self.images  # the shown one
        for mode in (self.images, self.volume):
            mode.predictions.shown.connect(self.prediction_shown)
        # the shown document's subscribers: canvas, objects panel (its own), title and actions, autosave
        self.document_view = DocumentView(self.canvas, lambda: self.view_panel.opacity.value() / 100)
        self.shown_doc: AnnotationDocument | None = None
        self.autosave_scheduler = AutosaveTimer(self, AUTOSAVE_DELAY_MS, lambda: self.autosave())
        self.autosave_timer = self.autosave_scheduler.timer
        self.training = ProjectTraining(self, self)  # Model > Train on this project's annotations
        self.recent_menu = QMenu("Open &recent", self)
        self.shortcut_sheet: QDialog | None = None  # Help > Keyboard and mouse shortcuts, once shown
        self.about_box: QMessageBox | None = None
        side_layout.insertWidget(0, self.volume.panel)
        self.volume.panel.shown.connect(self.side_panels.fit_width)

        self.actions_by_name = services.actions = build_menus(self)
        self.objects_panel.edit_requested.connect(self.edit_object)
        self.canvas_input = CanvasInput(self.canvas, lambda: self.doc)  # clicks and strokes to the document
        self.canvas.hovered.connect(lambda row, col: self.mode.on_hover(row, col))
        self.view_panel.opacity.valueChanged.connect(lambda _v: self.document_view.redraw())
        self.view_panel.threshold.valueChanged.connect(self._on_threshold)
        self.view_panel.brush.valueChanged.connect(self._on_brush_radius)
        self.view_panel.tool_changed.connect(self._on_tool)
        self.labels_panel.changed.connect(self._on_labels_changed)
        self.labels_panel.list.currentRowChanged.connect(self._on_label_selected)
        self._on_brush_radius(self.view_panel.brush.value())
        dialogs.fill_recent_menu(self.recent_menu, self.settings.recent_files, self.open_path)
        self.worker.start()
        QApplication.instance().aboutToQuit.connect(self.worker.stop)
        self.models.start()
        if self.settings.problem:
            self.inform("Settings", self.settings.problem)

    # ------------------------------------------------------------ helpers
    @property
    def doc(self) -> AnnotationDocument | None:
        """The shown document: the open image's, or the volume document (shown slice by slice)."""
        return self.mode.doc

    @property
    def project(self) -> Project | None:
        """The image folder (None while a volume is shown)."""
        return self.images.project

    @property
    def image_key(self) -> str:
        """The key the worker knows the shown image (or slice) by."""
        return self.mode.image_key

    def inform(self, title: str, text: str, error: bool = False) -> None:
        """Show a message: a dialog for errors, the status bar for notices (its first line, cut to fit;
        the whole text in the tooltip and the log). An empty text clears the status bar."""
        self.message_label.setText(text)
        if text:
            log.info("%s: %s", title, text)
        if error:
            QMessageBox.warning(self, title, text)

    def _activate(self, mode: Mode) -> None:
        """Show ``mode`` from now on; the mode shown until now autosaves and lets go of its document. The
        engine follows the kind of data unless the user picked one."""
        self.models.set_modality("volume" if mode is self.volume else "photo")
        if mode is not self.mode:
            self.autosave_scheduler.stop()
            self.mode.deactivate()
            self.mode = mode

    def _remember_recent(self, path: Path) -> None:
        self.settings.add_recent(path)
        dialogs.fill_recent_menu(self.recent_menu, self.settings.recent_files, self.open_path)

    def show_shortcuts(self) -> None:
        """Help > Keyboard and mouse shortcuts (the sheet shown before is closed)."""
        if self.shortcut_sheet is not None:
            self.shortcut_sheet.close()
        self.shortcut_sheet = show_shortcut_sheet(self, self.menuBar())

    def show_about(self) -> None:
        self.about_box = show_about(self, self.models, self.engine_text)

    # ------------------------------------------------------------ opening
    def open_path(self, path: str | Path) -> bool:
        """Open an image file or a folder of images, or a volume (NIfTI file, DICOM folder).

        Loading runs in the background; False (with a message) if it could not even start.
        """
        path = Path(path)
        try:
            empty = path.is_dir() and not any(p for p in path.iterdir() if not p.name.startswith("."))
        except OSError as exc:
            self.inform("Open", f"Cannot read the folder {path}: {exc.strerror or exc}", error=True)
            return False
        if empty:
            self.inform("Open", f"The folder {path} is empty: there is nothing to annotate in it "
                        "(images, a DICOM series or NIfTI volumes).", error=True)  # fmt: skip
            return False
        if path.exists() and looks_like_volume(path):
            self.volume.files.open(path)  # in the background, once the autosaves asked for are written
            return True
        return self.images.open(path)

    def show_index(self, index: int) -> bool:
        """Open image ``index`` of the folder (in the background)."""
        return self.images.show_index(index)

    def next_image(self) -> None:
        self.images.step(+1)

    def previous_image(self) -> None:
        self.images.step(-1)

    def start_dir(self) -> str:
        """Where file dialogs start: the shown file's folder, else the most recent file's, else home."""
        doc = self.doc
        if doc is not None:
            return str(doc.path.parent)
        for recent in self.settings.recent_files:
            folder = Path(recent).parent
            if folder.is_dir():
                return str(folder)
        return str(Path.home())

    def export_dir(self) -> str:
        """Where export dialogs start: the shown file's folder where we may write in it (not inside the
        installation, e.g. the bundled sample), else the home folder."""
        doc = self.doc
        if doc is not None:
            folder = doc.path.parent
            self.sidecars.folder_for(folder)  # decides (once) whether that folder can be written
            if not self.sidecars.is_redirected(folder):
                return str(folder)
        return str(Path.home())

    def open_image_dialog(self) -> None:
        pattern = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.start_dir(),
                                              f"Images ({pattern});;All files (*)")  # fmt: skip
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of images", self.start_dir())
        if path:
            self.open_path(path)

    # ------------------------------------------------------------ editing
    def add_click(self, y: float, x: float, positive: bool) -> None:
        """A click on the shown document, as the canvas sends it (:class:`CanvasInput`): its event sends
        the prediction request first, then draws the dots only; the overlay keeps the previous prediction
        until the new one arrives (:class:`DocumentView`)."""
        self.canvas_input.add_click(y, x, positive)

    def finish_object(self) -> None:
        if self.doc is None:
            return
        cls = self.labels_panel.current()
        if self.doc.finish_object(cls.name, cls.color) is None:
            self.inform("Finish", "Nothing to finish: click on the object first.")

    def edit_object(self, uid: int) -> None:
        """Double-click in the Objects panel: what Return does on a volume (clicks then edit the
        object); on a photo, choose its class."""
        if self.doc is None:
            return
        self.doc.select(uid)
        edit = self.actions_by_name["edit_object"]
        if edit.isEnabled():
            edit.trigger()
        else:
            self.objects_panel.rename()

    def mark_no_objects(self) -> None:
        """Toggle the mark "done: no objects" of the shown image (a negative image in exports)."""
        doc = self.images.doc if self.mode is self.images else None
        if doc is None:
            self.inform("Mark done", "Open an image first; a volume's label map is exported as it is.")
        elif doc.objects or doc.has_current():
            self.inform("Mark done", f"{doc.path.name} has objects: delete them to mark it as having none.")
        else:
            doc.mark_no_objects(not doc.no_objects)
        self._show_document_state()  # the menu entry toggled itself: it shows the document's mark again

    def reset_clicks(self) -> None:
        """Esc: drop the current object's clicks and corrections; with none, clear the selection."""
        if self.doc is None:
            return
        if self.doc.has_current():
            self.doc.reset_clicks()
        else:
            self.doc.select(None)

    def undo(self) -> None:
        """Undo; clicks undone to a list not predicted yet are sent to the worker by their event."""
        if self.doc is not None:
            self.doc.undo()

    def redo(self) -> None:
        if self.doc is not None:
            self.doc.redo()

    # ------------------------------------------------------------ worker
    def _show_latency(self, result: PredictResult) -> None:
        """Every prediction's time in the status bar (its mode stores the map in the document)."""
        self.last_latency_ms = result.latency_ms
        self.latency_label.setText(f"{result.latency_ms:.0f} ms · {self.engine_text}")

    def _on_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)

    def _on_worker_failed(self, what: str, message: str) -> None:
        if what == "predict":
            self.document_view.redraw()  # the previous overlay stayed up while waiting for this prediction
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
    def show_document(self, doc: AnnotationDocument | None) -> None:
        """A mode shows ``doc`` now: the canvas, the objects panel, the title, the actions, the threshold
        slider and the autosave timer follow its events (and no longer those of the one shown before)."""
        old, self.shown_doc = self.shown_doc, doc
        if old is not None:
            for emitter in (old.events.dirty, old.events.objects, old.events.view):
                emitter.disconnect(self._show_document_state)
            old.events.threshold.disconnect(self._show_threshold)
        self.document_view.show(doc)
        self.objects_panel.set_document(doc)
        self.autosave_scheduler.follow(doc)
        if doc is None:
            return
        for emitter in (doc.events.dirty, doc.events.objects, doc.events.view):
            emitter.connect(self._show_document_state)
        doc.events.threshold.connect(self._show_threshold)
        self._show_threshold(ThresholdChanged(doc.threshold))  # its own (restored from its autosave)
        self._show_document_state()

    def _show_document_state(self, _event: object = None) -> None:
        """Title (a star while unsaved), Undo/Redo and the "no objects" mark of the shown document."""
        doc = self.doc
        if doc is None:
            return
        self.actions_by_name["undo"].setEnabled(doc.can_undo())
        self.actions_by_name["redo"].setEnabled(doc.can_redo())
        self.actions_by_name["no_objects"].setChecked(self.mode is self.images and doc.no_objects)
        self.setWindowTitle(f"{doc.path.name}{' *' if doc.dirty else ''} — isegformer")

    def _show_threshold(self, event: ThresholdChanged) -> None:
        """The slider shows the document's threshold (not sent back as a move of the user)."""
        self.view_panel.show_threshold(event.threshold)

    def _on_threshold(self, value: int) -> None:
        """The user moved the threshold slider: the shown document (image or volume) takes it."""
        if self.doc is not None:
            self.doc.set_threshold(value / 100)

    def _on_brush_radius(self, value: int) -> None:
        self.canvas.brush_radius = value

    def _on_tool(self, name: str) -> None:
        self.canvas.tool = name

    # ------------------------------------------------------------ labels
    def _default_labels(self, kind: DataKind) -> LabelList:
        """The set a new project of ``kind`` starts with (the user's, else the built-in one)."""
        saved = self.settings.volume_labels if kind == "volumes" else self.settings.labels
        return LabelList.default_for(kind, saved)

    def _load_project_labels(self) -> None:
        """A folder or volume is shown now: its own label list (the default set for its kind of data if
        it has none) with the class selected when it was last open."""
        path = self.mode.labels_file()
        if path is None:
            return
        self.labels_seen[path] = LabelsSeen()
        default = self._default_labels(self.mode.data_kind)
        try:
            project, self.labels_seen[path] = read_project_labels(path, default)
        except ProjectLabelsError as exc:
            self.inform("Labels", str(exc), error=True)  # a dialog: the status bar is taken by the open
            project = ProjectLabels(default)
        self._selected_label = project.selected
        self.labels.classes[:] = project.labels.classes  # the panels hold this very list
        self._show_labels(project.selected)

    def _show_labels(self, selected: str) -> None:
        """Refill the label and object panels; select class ``selected`` (the first if "")."""
        self._showing_labels = True
        try:
            self.labels_panel.refresh()
            self.labels_panel.list.setCurrentRow(max(0, self.labels.names().index(selected)
                                                     if selected in self.labels.names() else 0))  # fmt: skip
        finally:
            self._showing_labels = False
        self.objects_panel.refresh()

    def _on_label_selected(self, _row: int) -> None:
        """The user picked another class: the project remembers it."""
        if not self._showing_labels and self.labels_panel.list.currentRow() >= 0:
            name = self.labels_panel.current().name
            if name != self._selected_label:
                self._selected_label = name
                self._write_project_labels()

    def _on_labels_changed(self) -> None:
        """The user edited the labels: the open project's list is written (in the background); with
        nothing open the edit changes the default set for new projects."""
        self.objects_panel.refresh()
        if self.mode.labels_file() is None:
            self.settings.labels = self.labels.to_json()
            return
        self._selected_label = self.labels_panel.current().name
        self._write_project_labels()

    def _write_project_labels(self) -> None:
        path = self.mode.labels_file()
        if path is None:
            return
        labels = LabelList([LabelClass(c.name, c.color) for c in self.labels.classes])
        project = ProjectLabels(labels, self._selected_label)
        source = self.mode.doc.path  # a file of the project's folder: its autosaves go where it goes

        def target() -> Path:  # this project's file, in the per-user folder after a redirect
            return self.sidecars.folder_for(source.parent) / path.name

        written: list = []

        def write(out: Path) -> None:  # reads what was seen when it runs: after the previous write's
            written.append(write_project_labels(project, out, self.labels_seen.get(path, LabelsSeen())))

        def saved() -> None:
            self.labels_seen[path], merged = written[-1]
            if self.mode.labels_file() != path:
                return  # another project is shown now: its list is not this one's
            for cls in merged:  # classes another instance added meanwhile
                self.labels.ensure(cls.name, cls.color)
            if merged:
                self._show_labels(self._selected_label)  # the selected class stays selected
                # a write asked for before this merge lacks those classes: the newest list replaces it
                self._write_project_labels()
                names = ", ".join(c.name for c in merged)
                self.inform("Labels", f"Another isegformer added labels to this project meanwhile: {names} "
                            "(merged into this list).")  # fmt: skip

        self.sidecar_writer.write(write, target, source, saved, key=path)

    def use_label_preset(self, name: str) -> None:
        """Edit > Label presets: the open project's classes become preset ``name`` (classes that its
        objects use stay, after the preset's)."""
        doc = self.doc
        used = {o.label for o in doc.objects} if doc is not None else set()
        self.labels.classes[:] = self.labels.with_preset(LABEL_PRESETS[name], used).classes
        self._show_labels(self._selected_label)
        self._on_labels_changed()
        self.inform("Labels", f"Labels: {', '.join(self.labels.names())}.")

    def make_labels_default(self) -> None:
        """Use the shown labels for every project of the shown kind of data (photos or volumes) opened
        for the first time from now on."""
        kind = self.mode.data_kind
        if kind == "volumes":
            self.settings.volume_labels = self.labels.to_json()
        else:
            self.settings.labels = self.labels.to_json()
        self.inform("Labels", f"New {kind} projects start with these {len(self.labels)} labels.")

    # ------------------------------------------------------------ saving
    def autosave(self) -> None:
        """Timer: the shown mode writes its autosave in the background (a copy is taken now)."""
        self.mode.autosave()

    def save_now(self) -> bool:
        """Save the shown document's autosave now, in the background (images and volumes alike)."""
        return self.mode.save()

    def export_dialog(self, all_images: bool = True) -> None:
        self.mode.export_dialog(all_images)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if not self.mode.close_check(self.close) or not self.training.confirm_close():
            event.ignore()
            return
        self.settings.opacity = self.view_panel.opacity.value() / 100
        self.settings.threshold = self.view_panel.threshold.value() / 100
        self.settings.brush_radius = self.view_panel.brush.value()
        try:
            self.settings.save()
        except OSError as exc:
            self.inform("Settings", f"Could not save settings: {exc}")
        self.sidecar_writer.close()  # writes finish; a load waiting for them does not start any more
        finish_tasks(self)
        self.worker.stop()
        event.accept()

