"""Image mode of the window: a folder (or one image) of photos, opened and stepped in the background.

Decoding an image and reading its autosave run off the GUI thread (:meth:`Project.read_step`); the
finished document is installed on the GUI thread (:meth:`Project.install`). The image left behind is
autosaved through the shared background writer, so switching images never waits on the disk either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDockWidget, QMessageBox

from isegformer_app.state.document import Document
from isegformer_app.state.export import ExportSummary, describe_skipped, export_target_kind, exported_stems
from isegformer_app.state.finetune_job import TrainingSource, image_folder_source
from isegformer_app.state.image_status import document_status
from isegformer_app.state.imageio import DEFAULT_MAX_SIDE, ImageLoadError
from isegformer_app.state.labels import DataKind, LabelClass, LabelList
from isegformer_app.state.project import OpenedImage, Project
from isegformer_app.state.project_labels import project_labels_path
from isegformer_app.state.snapshot import SaveOutcome, Snapshot
from isegformer_app.ui import dialogs
from isegformer_app.ui.canvas import to_display_qimage
from isegformer_app.ui.dialogs import ask_folder
from isegformer_app.ui.file_list import FileListPanel
from isegformer_app.ui.modes import WindowServices
from isegformer_app.ui.prediction_link import PredictionLink
from isegformer_app.ui.tasks import BackgroundTask, run_task


class ImageMode(QObject):
    """Owns the image project; ``opened(ok)`` is emitted when a background open/step has ended."""

    opened = Signal(bool)
    data_kind: DataKind = "photos"

    def __init__(self, services: WindowServices, max_side: int = DEFAULT_MAX_SIDE) -> None:
        super().__init__(services.parent)
        self.services = services
        self.max_side = max_side
        self.project: Project | None = None
        self.predictions = PredictionLink(services.worker, services.inform, services.show_busy, self,
                                          lambda: services.settings.local_edits)  # fmt: skip
        self.loading: BackgroundTask | None = None
        self.last_load_ok: bool | None = None  # how the last background open/step ended
        self._queued_steps = 0  # D/A presses while an image was loading
        self.files = FileListPanel()
        self.files.chosen.connect(self.show_index)
        self.files_dock = QDockWidget("Files", services.parent)
        self.files_dock.setObjectName("files")
        self.files_dock.setWidget(self.files)
        services.parent.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.files_dock)
        self.files_dock.setVisible(False)

    @property
    def doc(self) -> Document | None:
        return self.project.doc if self.project else None

    @property
    def image_key(self) -> str:
        """The key the worker knows the shown image by."""
        return self.predictions.image_key

    # ------------------------------------------------------------------ open
    def open(self, path: str | Path) -> bool:
        """Open an image file or a folder of images in the background; False (with a message) if it
        cannot even start (no such file, no images, another image still loading)."""
        s = self.services
        try:
            project = Project.from_path(path, locator=s.sidecars, max_side=self.max_side,
                                        threshold=s.view.threshold.value() / 100)  # fmt: skip
        except ValueError as exc:
            s.inform("Open", str(exc), error=True)
            return False
        return self._load(project, -1, +1, "Open folder", Path(path))

    def show_index(self, index: int) -> bool:
        """Open image ``index`` of the project (in the background). The Files dock keeps showing the
        image on the canvas until the chosen one is shown (it stays unselected if it cannot be read)."""
        if self.project is None or not 0 <= index < len(self.project.paths):
            return False
        self.files.set_current(self.project.index)
        return self._load(self.project, index - 1, +1, "Open image", single=True)

    def step(self, delta: int) -> None:
        """Open the next (+1) / previous (-1) readable image; presses while loading are added up."""
        if self.project is None:
            return
        if self.loading is not None:
            self._queued_steps += delta
            return
        self._load(self.project, self.project.index, delta, "Navigate")

    def _load(self, project: Project, start: int, delta: int, title: str, recent: Path | None = None,
              single: bool = False) -> bool:  # fmt: skip
        """Read (in the background) the first readable image from ``start + delta``; on the way the
        image left behind is autosaved. ``single``: only that image, no skipping."""
        if self.loading is not None:
            self.services.inform(title, "An image is still loading.")
            return False
        leaving = self.doc
        snapshot = leaving.snapshot() if leaving is not None and leaving.dirty else None
        old_project = self.project
        # the autosave in flight (if any) finishes first, in this task's thread, so that an older
        # snapshot never lands after the one written here and no sidecar is read while being written
        in_flight = self.services.writer.take_over(snapshot.key if snapshot is not None else None)

        def read() -> OpenedImage:
            if single:
                try:
                    doc, notices = project.read_image(start + delta)
                except ImageLoadError as exc:
                    return OpenedImage(None, None, [], [(project.paths[start + delta], exc.reason)])
                return OpenedImage(start + delta, doc, notices)
            return project.read_step(start, delta)

        def work(report, cancel) -> tuple[OpenedImage, QImage | None, SaveOutcome | None]:
            if in_flight is not None:
                in_flight.wait()
            saved = old_project.write_snapshot(snapshot) if snapshot is not None else None
            opened = read()
            # the screen copy is made here too: the GUI thread only hands it to the canvas
            return opened, None if opened.doc is None else to_display_qimage(opened.doc.image.rgb), saved

        def done(task: BackgroundTask) -> None:
            self.loading = None
            ok = self.last_load_ok = self._loaded(task, project, title, recent, leaving, snapshot, single)
            queued, self._queued_steps = self._queued_steps, 0
            if ok and queued:
                self.step(queued)
            else:
                self.opened.emit(ok)

        self.loading = run_task(self.services.parent, "Open image", work, done, cancellable=False,
                                min_duration_ms=500, keep_result=False)  # fmt: skip
        return True

    def _loaded(self, task: BackgroundTask, project: Project, title: str, recent: Path | None,
                leaving: Document | None, snapshot, single: bool = False) -> bool:  # fmt: skip
        s = self.services
        if project is self.project:
            self.files.set_current(project.index)  # the dock shows what the canvas shows
        if task.error is not None:
            if isinstance(task.exception, OSError):
                s.inform("Autosave", f"Could not save the previous image's annotations: {task.error}",
                         error=True)  # fmt: skip
            else:
                s.inform(title, task.error, error=True)
            return False
        opened, display, saved = task.result
        if saved is not None and leaving is not None:
            self._saved(leaving, snapshot, saved)
        left = project.index
        doc = project.install(opened)
        if project is self.project:
            if leaving is not None and doc is not None:
                self.files.set_status(left, document_status(leaving))
            for path, _why in opened.skipped:
                self.files.set_status(project.paths.index(path), "unreadable")
        if doc is None:
            if project is not self.project:  # a new folder with nothing readable
                try:
                    project.require_readable(None)
                except ImageLoadError as exc:
                    s.inform(title, str(exc), error=True)
                return False
            if single:
                path, why = opened.skipped[0]
                s.inform(title, f"Cannot open {path.name}: {why}.")
            else:
                notices = "".join(f" {n}." for n in project.notices)
                s.inform("Navigate", "No more readable images in this direction." + notices)
            return False
        if project is not self.project:
            s.activate(self)  # closes volume mode if it was shown
            self.project = project
            self._list_files(project)
            s.project_opened()
        if leaving is not None and leaving is not doc:
            leaving.events.disconnect_all()  # closed: nothing shows it any more
        self._show(doc, display)
        if recent is not None:
            s.remember_recent(recent)
        return True

    def _list_files(self, project: Project) -> None:
        """Fill the Files dock; the statuses of the other images are read from their sidecars in the
        background."""
        self.files.set_paths(project.paths)
        self.files_dock.setVisible(len(project.paths) > 1)
        shown = project.index

        def work(report, cancel) -> list:
            return [None if i == shown else project.status(i) for i in range(len(project.paths))]

        def done(task: BackgroundTask) -> None:
            if task.error is None and project is self.project:
                for i, status in enumerate(task.result):
                    if status is not None:
                        self.files.fill_status(i, status)

        run_task(self.services.parent, "Read folder", work, done, dialog=False)

    def _show(self, doc: Document, display: QImage | None = None) -> None:
        s = self.services
        self.predictions.attach(doc, f"{doc.path}#{id(doc)}")  # first: a click's request goes out first
        doc.events.clicks.connect(self._show_status)
        doc.events.objects.connect(self._show_status)
        self.files.set_current(self.project.index)
        self._show_status()
        s.canvas.set_image(doc.image.rgb, prepared=display)
        s.show_cursor("")  # the readout of the image left behind goes with it
        s.worker.set_image(self.image_key, doc.image.rgb)
        s.show_document(doc)
        n = len(self.project.paths)
        notices = "".join(f" — {n}" for n in self.project.notices)
        s.inform("Open", f"{doc.path.name} ({self.project.index + 1}/{n}){notices}")
        self.request_prediction()

    def _show_status(self, _event: object = None) -> None:
        """The Files dock's status of the shown image follows its clicks and objects."""
        doc = self.doc
        if doc is not None:
            self.files.set_status(self.project.index, document_status(doc))

    def labels_file(self) -> Path | None:
        """The folder's label list, beside its autosaves."""
        if self.project is None:
            return None
        return project_labels_path(self.services.sidecars.folder_for(self.project.paths[0].parent))

    def training_source(self) -> TrainingSource | None:
        """The open folder's finished objects, in every image."""
        return image_folder_source(self.project) if self.project is not None else None

    def on_hover(self, row: float, col: float) -> None:
        """Readout: the pixel under the cursor (full-resolution coordinates) and its colour."""
        doc = self.doc
        if doc is None or row < 0:
            self.services.show_cursor("")
            return
        r, g, b = (int(v) for v in doc.image.rgb[int(row), int(col)])
        (full_h, full_w), (h, w) = doc.image.full_size, doc.shape
        x, y = int(col * full_w / w), int(row * full_h / h)
        self.services.show_cursor(f"x {x}, y {y}  ·  RGB {r}, {g}, {b}")

    def wait_for_load(self) -> bool:
        """Block until the background open/step (and the steps queued behind it) is shown (tests,
        scripts); True if it ended with an image shown, False if it failed or none was running."""
        if self.loading is None:
            return False
        while self.loading is not None:
            task = self.loading
            task.wait()
            while self.loading is task:
                QCoreApplication.processEvents()
        return bool(self.last_load_ok)

    # ----------------------------------------------------------- predictions
    def request_prediction(self) -> bool:
        return self.predictions.request()

    # ---------------------------------------------------------------- saving
    def autosave(self) -> None:
        """Write the open document's sidecar in the background if it changed; the document is copied
        now, compression and the atomic, fsynced write run off the GUI thread."""
        if self.doc is not None:
            self.services.writer.save(self.doc)

    def _saved(self, doc: Document, snapshot: Snapshot, outcome: SaveOutcome) -> None:
        """An autosave of ``doc`` was written: record it, and say what was merged from another instance."""
        doc.saved(snapshot, outcome)
        if outcome.notice:
            self.services.inform("Autosave", outcome.notice)

    def save(self, then: Callable[[], object] | None = None) -> bool:
        """Write the open image's autosave now, in the background (after the writes asked for before);
        ``then()`` after it is written."""
        if self.doc is not None:
            self.services.writer.save(self.doc, then, dialog=then is not None)
        elif then is not None:
            then()
        return True

    # ---------------------------------------------------------------- export
    def export_dialog(self, all_images: bool = True) -> None:
        """Ask for a folder (starting beside the images if we may write there; a new name is created),
        then :meth:`export_to` it."""
        if self.doc is None:
            self.services.inform("Export", "Open an image or a folder first.", error=True)
            return
        out = ask_folder(self.services.parent, "Export annotations to folder", self.services.export_dir())
        if out:
            self.export_to(out, all_images)

    def export_to(self, out_dir: str | Path, all_images: bool = True,
                  overwrite: bool | None = None) -> BackgroundTask | None:  # fmt: skip
        """Export in a background thread with a progress dialog (Cancel leaves the folder as it was).

        Runs the project's tested :class:`~isegformer_app.state.export.ExportPlan`. A folder that holds
        an earlier export is replaced (or, for one image, updated) only after the user agrees
        (``overwrite`` None = ask); a non-empty folder that is not an export is refused. Returns the
        running task (``task.result``: an :class:`ExportSummary`), None if nothing was started.
        """
        s, project = self.services, self.project
        if project is None or project.doc is None:
            s.inform("Export", "Open an image first.", error=True)
            return None
        out = Path(out_dir)
        kind = export_target_kind(out)
        if kind == "other":
            s.inform("Export", f"{out} is not empty and holds no isegformer export. Choose an empty "
                               "folder, or an earlier export to replace.", error=True)  # fmt: skip
            return None
        if kind == "export" and overwrite is None:
            overwrite = self._confirm_overwrite(out, all_images, project.doc.path.stem)
            if not overwrite:
                return None
        plan = project.export_plan(all_images)  # the open image is copied now, on the GUI thread
        known = s.labels.labels
        labels = LabelList([LabelClass(c.name, c.color) for c in known.classes])

        def work(report, cancel) -> ExportSummary:
            return plan.run(out, labels, lambda f, name: report(f, name or "writing labels"), cancel,
                            overwrite=bool(overwrite))  # fmt: skip

        def done(task: BackgroundTask) -> None:
            for cls in labels.classes:  # classes met during the export join the label list
                known.ensure(cls.name, cls.color)
            if task.error is not None:
                s.inform("Export", f"Export failed ({out} was left as it was): {task.error}", error=True)
            elif task.cancelled or task.result is None:
                s.inform("Export", f"Export cancelled; {out} was left as it was.")
            else:
                summary = task.result
                skipped = describe_skipped(summary.skipped)
                details = "".join(f"\n{item}" for item in summary.skipped)  # in the message log
                s.inform("Export", f"Exported {summary.exported} image(s) to {out}"
                                   f"{'; ' + skipped if skipped else ''}.{details}")  # fmt: skip

        return run_task(s.parent, "Export", work, done)

    def _confirm_overwrite(self, out: Path, all_images: bool, stem: str) -> bool:
        earlier = exported_stems(out)
        if all_images:
            text = (f"{out} holds an earlier export ({len(earlier)} image(s)).\n"
                    "Replace it with the annotations of this folder?")  # fmt: skip
        elif stem in earlier:
            text = f"The export in {out} already holds {stem}. Replace that image's annotations?"
        else:
            return True  # adding an image to an export changes nothing that is there
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel
        answer = QMessageBox.question(self.services.parent, "Export", text, buttons,
                                      QMessageBox.StandardButton.Cancel)  # fmt: skip
        return answer == QMessageBox.StandardButton.Yes

    def close_check(self, close_again: Callable[[], object]) -> bool:
        doc = self.doc
        if doc is None or not doc.dirty:
            return True
        answer = dialogs.ask_unsaved(self.services.parent, doc)
        if answer == "save":
            self.save(then=close_again)  # closes once written
        return answer == "discard"

    def deactivate(self) -> None:
        """A volume is shown now: write this image's autosave (in the background) and close it."""
        self.autosave()
        if self.doc is not None:
            self.doc.events.disconnect_all()
        self.project = None
        self.predictions.attach(None)
        self.files_dock.setVisible(False)
