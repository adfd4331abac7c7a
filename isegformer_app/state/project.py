"""A project: the images of a folder (or one image), the open document and its autosave sidecar."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from isegformer_app.state.autosave import (
    SidecarError,
    remove_stale_temp_files,
    restore_document,
    sidecar_path,
)
from isegformer_app.state.document import Document
from isegformer_app.state.export import ExportPlan, ExportSummary, plan_export
from isegformer_app.state.image_status import ImageStatus, document_status, sidecar_status
from isegformer_app.state.imageio import (
    DEFAULT_MAX_SIDE,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    list_images,
    load_image,
)
from isegformer_app.state.labels import LabelList
from isegformer_app.state.sidecar_codec import set_aside
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.state.snapshot import SaveOutcome, Snapshot
from isegformer_app.volumes.progress import CancelFlag, ProgressCallback
from model.threshold import DEFAULT_THRESHOLD


@dataclass
class OpenedImage:
    """What :meth:`Project.read_step` read: image ``index`` and its document (None: nothing readable),
    its notices, and the unreadable images passed over on the way (path, why)."""

    index: int | None
    doc: Document | None
    notices: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class Project:
    """Images to annotate and the current one; switching images autosaves the one left.

    ``sidecar_dir`` None = ``<image folder>/.isegformer``, or a per-user folder where that cannot be
    written; a ``locator`` (shared with the window's volume mode) replaces ``sidecar_dir``.
    """

    def __init__(
        self,
        paths: list[Path],
        sidecar_dir: Path | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        threshold: float = DEFAULT_THRESHOLD,
        locator: SidecarLocator | None = None,
    ) -> None:
        if not paths:
            raise ValueError("no images to annotate")
        self.paths = list(paths)
        self.sidecar_dir = sidecar_dir
        self.max_side = max_side
        self.first_threshold = threshold
        self.index = -1
        self.doc: Document | None = None
        self.notices: list[str] = []
        self.save_notices: list[str] = []  # what synchronous saves merged from another instance (unshown)
        self.unreadable: dict[Path, str] = {}  # image -> why it could not be opened
        self.locator = locator if locator is not None else SidecarLocator(sidecar_dir)
        for folder in {self.sidecar_for(p).parent for p in self.paths}:
            remove_stale_temp_files(folder)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> Project:
        """A folder (its images, sorted) or one image file; raises ValueError for anything else."""
        path = Path(path)
        if path.is_dir():
            images = list_images(path)
            if not images:
                raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}.")
            return cls(images, **kwargs)
        if path.is_file():
            return cls([path], **kwargs)
        raise ValueError(f"{path} does not exist.")

    @property
    def threshold(self) -> float:
        """The threshold a newly read image starts with (its autosave may have its own): the shown
        document's, which owns it, else the one the project was opened with."""
        return self.doc.threshold if self.doc is not None else self.first_threshold

    def sidecar_for(self, path: Path) -> Path:
        """Where the autosave of image ``path`` is written."""
        return sidecar_path(path, self.locator.folder_for(path.parent))

    def _existing_sidecar(self, path: Path) -> Path:
        """The sidecar to restore ``path`` from (the written one, else one left beside the image)."""
        return self.locator.existing(path.parent, lambda folder: sidecar_path(path, folder))

    def take_location_notices(self) -> list[str]:
        """Notices about redirected autosave folders not yet shown (each is shown once)."""
        notices, self.locator.notices = self.locator.notices, []
        return notices

    def read_image(self, index: int) -> tuple[Document, list[str]]:
        """A new document of image ``index`` with its sidecar restored, and its notices.

        Safe off the GUI thread (nothing of the project changes); raises
        :class:`~isegformer_app.state.imageio.ImageLoadError`. An unusable sidecar is set aside
        (:func:`~isegformer_app.state.sidecar_codec.set_aside`) and reported in the notices; the document
        then stays dirty.
        """
        image = load_image(self.paths[index], self.max_side)
        doc = Document(image, threshold=self.threshold)
        notices = list(image.notices)
        sidecar = self._existing_sidecar(image.path)
        try:
            restore_document(doc, sidecar)
        except SidecarError as exc:
            doc.saved_revision = -1  # dirty: the next autosave writes a fresh file beside the set-aside one
            kept = set_aside(sidecar, exc)
            notices.append(f"{exc} {kept}".strip())
        return doc, notices

    def read_step(self, start: int, delta: int) -> OpenedImage:
        """Read the first readable image from ``start + delta`` on, in steps of ``delta`` (+1 / -1).

        Safe off the GUI thread; :meth:`install` shows the result. ``doc`` is None if none is readable.
        """
        skipped: list[tuple[Path, str]] = []
        target = start + delta
        while 0 <= target < len(self.paths):
            try:
                doc, notices = self.read_image(target)
            except ImageLoadError as exc:
                skipped.append((self.paths[target], exc.reason))
                target += delta
                continue
            return OpenedImage(target, doc, notices, skipped)
        return OpenedImage(None, None, [], skipped)

    def install(self, opened: OpenedImage) -> Document | None:
        """Make a read image the open one (GUI thread) and record unreadable ones; returns its document.

        Without a readable image the current one stays open and :attr:`notices` names the skipped ones.
        """
        for path, why in opened.skipped:
            self.unreadable[path] = why
        skipped = [f"Skipped {p.name}: {why}" for p, why in opened.skipped]
        if opened.doc is None:
            self.notices = skipped
            return None
        self.unreadable.pop(self.paths[opened.index], None)
        self.notices = skipped + opened.notices + self.take_location_notices()
        self.index, self.doc = opened.index, opened.doc
        return opened.doc

    def open_index(self, index: int) -> Document:
        """Autosave the current image, then open image ``index`` (:meth:`read_image` + :meth:`install`).

        Raises :class:`~isegformer_app.state.imageio.ImageLoadError` (the current image stays open).
        """
        try:
            doc, notices = self.read_image(index)
        except ImageLoadError as exc:
            self.unreadable[self.paths[index]] = exc.reason
            raise
        self.save()
        return self.install(OpenedImage(index, doc, notices, []))

    def step(self, delta: int) -> Document | None:
        """Autosave, then open the next (+1) / previous (-1) readable image; None if there is none.

        Unreadable images on the way are skipped, recorded in :attr:`unreadable` and named in
        :attr:`notices`; the current image stays open when nothing further can be read.
        """
        opened = self.read_step(self.index, delta)
        if opened.doc is not None:
            self.save()
        return self.install(opened)

    def open_first(self) -> Document:
        """Open the first readable image; raises ImageLoadError naming every image if none is."""
        return self.require_readable(self.install(self.read_step(-1, +1)))

    def require_readable(self, doc: Document | None) -> Document:
        """``doc`` of a folder's first opening; ImageLoadError naming every image if none was readable."""
        if doc is None:
            names = "; ".join(f"{p.name}: {why}" for p, why in self.unreadable.items())
            raise ImageLoadError(f"No image of this folder could be opened — {names}")
        return doc

    def save(self) -> bool:
        """Autosave the open document if it changed; returns True if a file was written."""
        if self.doc is None or not self.doc.dirty:
            return False
        snapshot = self.doc.snapshot()
        outcome = self.write_snapshot(snapshot)
        self.doc.saved(snapshot, outcome)
        if outcome.notice:
            self.save_notices.append(outcome.notice)
        return True

    def write_snapshot(self, snapshot: Snapshot) -> SaveOutcome:
        """Write an image's autosave (safe off the GUI thread), merging another instance's save of it (see
        :func:`~isegformer_app.state.image_sidecar.write_snapshot`); a folder that cannot be written is
        replaced by the per-user folder once (see :class:`SidecarLocator`), other errors raise OSError."""
        try:
            return snapshot.write(self.sidecar_for(snapshot.source))
        except OSError as exc:
            if not self.locator.redirect_after_failure(snapshot.source.parent, exc):
                raise
            return snapshot.write(self.sidecar_for(snapshot.source))

    def status(self, index: int) -> ImageStatus:
        """How far image ``index`` is annotated (from the open document, else from its sidecar)."""
        path = self.paths[index]
        if path in self.unreadable:
            return "unreadable"
        if self.doc is not None and index == self.index:
            return document_status(self.doc)
        return sidecar_status(self._existing_sidecar(path))

    def export_plan(self, all_images: bool = True) -> ExportPlan:
        """What an export of every image (or of the open one, added to an earlier export) writes."""
        paths = self.paths if all_images else [self.doc.path] if self.doc else []
        return plan_export(paths, self.doc, self._existing_sidecar, keep_other_images=not all_images,
                           unreadable=self.unreadable, max_side=self.max_side)  # fmt: skip

    def export(
        self, out_dir: Path, labels: LabelList, report: ProgressCallback | None = None,
        cancel: CancelFlag | None = None, all_images: bool = True, overwrite: bool = False,
    ) -> ExportSummary:
        """Export every annotated image of the project (or the open one); see :func:`export_items`."""
        return self.export_plan(all_images).run(out_dir, labels, report, cancel, overwrite)
