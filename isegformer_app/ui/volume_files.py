"""File work of volume mode, in background threads: open (with a series chooser), export, import (the
autosave is the shared background writer's, as for images).

Module-level names (``open_volume``, ``load_dicom_files``, ``scan_dicom_folder``, ``export_volume_labels``,
``import_volume_labels``) are looked up at call time so tests can slow them down.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from isegformer_app.state.sidecar_codec import SidecarError, set_aside
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.state.volume_autosave import (
    read_volume_sidecar,
    restore_volume_document,
    volume_sidecar_path,
)
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.state.volume_export import (
    export_volume_labels,
    export_volume_slices,
    import_volume_labels,
)
from isegformer_app.ui.dialogs import ask_folder
from isegformer_app.ui.modes import WindowServices
from isegformer_app.ui.tasks import BackgroundTask, run_task
from isegformer_app.volumes import (
    AXES,
    Volume,
    choose_series,
    load_dicom_files,
    open_volume,
    scan_dicom_folder,
)
from isegformer_app.volumes.label_tables import nifti_stem
from isegformer_app.volumes.nifti_load import is_nifti
from model.threshold import DEFAULT_THRESHOLD

VOLUME_FILTER = "NIfTI volumes (*.nii *.nii.gz);;All files (*)"


def looks_like_volume(path: Path) -> bool:
    """A NIfTI file, or a folder without ordinary images (a DICOM series or a BraTS case)."""
    from isegformer_app.state.imageio import IMAGE_EXTENSIONS, list_images

    path = Path(path)
    if path.is_file():
        return is_nifti(path) or path.suffix.lower() not in IMAGE_EXTENSIONS
    return path.is_dir() and not list_images(path)


def build_document(volume: Volume, path: Path, locator: SidecarLocator, notes: list[str],
                   report: Callable[[float, str], None],
                   threshold: float = DEFAULT_THRESHOLD) -> VolumeDocument:  # fmt: skip
    """The document of a freshly loaded ``volume``, with its autosave restored (in the loading thread);
    ``threshold`` is the one it starts with unless its autosave has its own.

    A problem with the autosave is appended to ``notes``: the file is set aside (kept under another name,
    also one written by a newer isegformer) and the document stays dirty, so the next autosave writes a
    fresh file.
    """
    doc = VolumeDocument(volume, path, threshold)
    _ = volume.digest  # computed here, in the loading thread: autosaves record it (GUI thread)
    sidecar = locator.existing(path.parent, lambda folder: volume_sidecar_path(path, volume, folder))
    if sidecar.is_file():
        report(0.97, "reading the autosave")
        try:
            restore_volume_document(doc, read_volume_sidecar(sidecar))
        except SidecarError as exc:
            notes.append(f"{exc} {set_aside(sidecar, exc)}".strip())
            doc.saved_revision = -1
    return doc


class VolumeFiles:
    """Open, export and import of volume mode; every disk access runs in a background task.

    ``current()`` is the volume document shown (None: none); ``install(doc, notes)`` shows a loaded one.
    """

    def __init__(self, services: WindowServices, current: Callable[[], VolumeDocument | None],
                 install: Callable[[VolumeDocument, list[str]], None]) -> None:  # fmt: skip
        self.services, self.current, self.install = services, current, install
        self.parent = services.parent
        self.last_task: BackgroundTask | None = None
        self._pending_open: object | None = None  # the open waiting for the autosaves, if any

    # ------------------------------------------------------------------ open
    def open(self, path: str | Path, series_uid: str | None = None, files: tuple | None = None,
             frame: int | None = None) -> BackgroundTask | None:  # fmt: skip
        """Load a volume in the background (progress dialog with Cancel); shows it when done (the
        volume or image shown until then is autosaved then). ``frame``: of a 4-D NIfTI file.

        The load starts once the autosaves asked for are written (it may read one of them); returns
        its task, or None while it waits for them."""
        path = Path(path)
        locator = self.services.sidecars
        threshold = self.services.view.threshold.value() / 100  # the shown document's, or the setting

        def work(report, cancel):
            notes: list[str] = []
            if files is None and path.is_dir() and not any(is_nifti(p) for p in path.iterdir()):
                scan = scan_dicom_folder(path, progress=lambda f, m: report(0.2 * f, m), cancel=cancel)
                if len(scan.series) > 1 and series_uid is None:
                    return "choose", scan
                info = choose_series(scan, series_uid)  # a clear error when there is no series
                volume = load_dicom_files(info.files, progress=lambda f, m: report(0.2 + 0.75 * f, m),
                                          cancel=cancel)  # fmt: skip
                volume.warnings[:0] = scan.notes
            elif files is not None:
                volume = load_dicom_files(files, progress=lambda f, m: report(0.95 * f, m), cancel=cancel)
            else:
                volume = open_volume(path, series_uid, frame, progress=lambda f, m: report(0.95 * f, m),
                                     cancel=cancel)  # fmt: skip
            return "volume", (build_document(volume, path, locator, notes, report, threshold), notes)

        token = self._pending_open = object()

        def start() -> None:
            if self._pending_open is not token:
                return  # a newer open, asked for while this one waited, replaces it
            self._pending_open = None
            self.last_task = run_task(self.parent, "Open volume", work, lambda t: self._opened(t, path),
                                      keep_result=False)  # fmt: skip

        # the autosave this load may read (a frame or volume just left) is written first
        self.last_task = None
        if self.services.writer.busy:
            self.services.inform("Open volume", f"Opening {path.name} once the autosave is written…")
        self.services.writer.when_idle(start)
        return self.last_task

    def _opened(self, task: BackgroundTask, path: Path) -> None:
        s = self.services
        if task.cancelled:
            s.inform("Open volume", "Loading was cancelled.")
            return
        if task.error is not None:
            s.inform("Open volume", f"Cannot open {path.name}: {task.error}", error=True)
            return
        kind, payload = task.result
        if kind == "choose":
            labels = [info.label() for info in payload.series]
            question = f"{path.name} holds several series:"
            choice, ok = QInputDialog.getItem(self.parent, "Choose a series", question, labels, 0, False)
            if ok:
                info = payload.series[labels.index(choice)]
                self.open(path, info.uid, info.files)
            return
        doc, notes = payload  # built in the background: only cheap work is left for this (GUI) thread
        self.install(doc, list(doc.volume.warnings) + notes)
        s.remember_recent(path)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open volume", self.services.start_dir(),
                                              VOLUME_FILTER)  # fmt: skip
        if path:
            self.open(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.parent, "Open DICOM folder", self.services.start_dir())
        if path:
            self.open(path)

    # ---------------------------------------------------------------- export
    def export_nifti(self, path: str | Path) -> BackgroundTask | None:
        doc = self.current()
        if doc is None:
            return None
        labels, volume = doc.export_labels(), doc.volume

        def done(task: BackgroundTask) -> None:
            if task.error is not None:
                self.services.inform("Export", f"Export failed: {task.error}", error=True)
            elif not task.cancelled:
                self.services.inform("Export", "Wrote " + ", ".join(p.name for p in task.result))

        self.last_task = run_task(self.parent, "Export label map",
                                  lambda report, cancel: export_volume_labels(labels, volume, path, report),
                                  done, cancellable=False)  # fmt: skip
        return self.last_task

    def export_nifti_dialog(self) -> None:
        doc = self.current()
        if doc is None:
            return
        default = str(Path(self.services.export_dir()) / f"{nifti_stem(doc.path)}_labels.nii.gz")
        path, _ = QFileDialog.getSaveFileName(self.parent, "Export label map", default, VOLUME_FILTER)
        if path:
            self.export_nifti(path)

    def export_slices(self, root: str | Path, layout: str, axis: str = "axial") -> BackgroundTask | None:
        doc = self.current()
        if doc is None:
            return None
        labels, volume, case = doc.export_labels(), doc.volume, nifti_stem(doc.path)

        def done(task: BackgroundTask) -> None:
            if task.error is not None:
                self.services.inform("Export", f"Export failed: {task.error}", error=True)
            else:
                stopped = " (cancelled)" if task.cancelled else ""
                count = len(task.result or [])
                self.services.inform("Export", f"Wrote {count} slice pair(s) to {root}{stopped}.")

        self.last_task = run_task(self.parent, "Export slices", lambda report, cancel: export_volume_slices(
            labels, volume, root, case, layout, axis, report, cancel), done)
        return self.last_task

    def export_slices_dialog(self) -> None:
        if self.current() is None:
            return
        layout, ok = QInputDialog.getItem(self.parent, "Slice export", "Layout:", ["brats", "oai_zib"], 0,
                                          False)  # fmt: skip
        if not ok:
            return
        axis, ok = QInputDialog.getItem(self.parent, "Slice export", "View:", list(AXES),
                                        AXES.index(self.current().axis), False)  # fmt: skip
        root = ask_folder(self.parent, "Export slices to folder", self.services.export_dir()) if ok else ""
        if root:
            self.export_slices(root, layout, axis)

    # ---------------------------------------------------------------- import
    def import_labels(self, path: str | Path) -> BackgroundTask | None:
        doc = self.current()
        if doc is None:
            return None
        path, volume = Path(path), doc.volume

        def done(task: BackgroundTask) -> None:
            if task.error is not None:
                self.services.inform("Import labels", f"Cannot use {path.name} as labels of this volume:\n"
                                   f"{task.error}", error=True)  # fmt: skip
            elif not task.cancelled and self.current() is doc:
                imported = task.result
                doc.import_labels(imported.labels)
                count = len(doc.object_list)
                self.services.inform("Import labels", f"Imported {count} label(s) from {path.name} "
                                   f"(undo restores the previous labels). {imported.summary()}")  # fmt: skip

        self.last_task = run_task(self.parent, "Import labels",
                                  lambda report, cancel: import_volume_labels(path, volume), done,
                                  keep_result=False)  # fmt: skip
        return self.last_task

    def import_labels_dialog(self) -> None:
        doc = self.current()
        if doc is None:
            return
        path, _ = QFileDialog.getOpenFileName(self.parent, "Import label map", str(doc.path.parent),
                                              VOLUME_FILTER)  # fmt: skip
        if path:
            self.import_labels(path)
