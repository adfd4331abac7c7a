"""A project: the images of a folder (or one image), the open document and its autosave sidecar."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from isegformer_app.state.autosave import (
    SidecarError,
    remove_stale_temp_files,
    restore_document,
    save_document,
    sidecar_path,
)
from isegformer_app.state.document import DEFAULT_THRESHOLD, Document
from isegformer_app.state.export import ExportPlan, ExportSummary, plan_export
from isegformer_app.state.imageio import (
    DEFAULT_MAX_SIDE,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    list_images,
    load_image,
)
from isegformer_app.state.labels import LabelList
from isegformer_app.state.sidecar_location import SidecarLocator


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
        self.threshold = threshold
        self.index = -1
        self.doc: Document | None = None
        self.notices: list[str] = []
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

    def open_index(self, index: int) -> Document:
        """Autosave the current image, then load image ``index`` and its sidecar.

        Raises :class:`~isegformer_app.state.imageio.ImageLoadError` (the current image stays open).
        A broken sidecar is left on disk untouched and reported in ``notices``.
        """
        path = self.paths[index]
        try:
            image = load_image(path, self.max_side)
        except ImageLoadError as exc:
            self.unreadable[path] = str(exc)
            raise
        self.unreadable.pop(path, None)
        self.save()
        doc = Document(image, threshold=self.threshold)
        self.notices = list(image.notices) + self.take_location_notices()
        try:
            restore_document(doc, self._existing_sidecar(image.path))
        except SidecarError as exc:
            self.notices.append(str(exc))
            doc.saved_revision = -1  # never overwrite the broken file silently: keep it dirty
            self._protect_sidecar(image.path)
        self.index, self.doc = index, doc
        return doc

    def _protect_sidecar(self, path: Path) -> None:
        broken = self._existing_sidecar(path)
        if broken.is_file():
            try:
                os.replace(broken, broken.with_name(broken.name + ".broken"))
            except OSError:  # read-only: it stays where it is, the next save goes elsewhere
                return
            self.notices.append(f"The unreadable autosave was kept as {broken.name}.broken.")

    def step(self, delta: int) -> Document | None:
        """Open the next (+1) / previous (-1) readable image; None if there is none that way.

        Unreadable images on the way are skipped, recorded in :attr:`unreadable` and named in
        :attr:`notices`; the current image stays open when nothing further can be read.
        """
        skipped: list[str] = []
        target = self.index + delta
        while 0 <= target < len(self.paths):
            try:
                doc = self.open_index(target)
            except ImageLoadError as exc:
                skipped.append(f"{self.paths[target].name} ({exc})")
                target += delta
                continue
            self.notices = [f"Skipped unreadable {s}" for s in skipped] + self.notices
            return doc
        self.notices = [f"Skipped unreadable {s}" for s in skipped]
        return None

    def open_first(self) -> Document:
        """Open the first readable image; raises ImageLoadError naming every image if none is."""
        self.index = -1
        doc = self.step(+1)
        if doc is None:
            names = "; ".join(f"{p.name}: {why}" for p, why in self.unreadable.items())
            raise ImageLoadError(f"No image of this folder could be opened — {names}")
        return doc

    def save(self) -> bool:
        """Autosave the open document if it changed; returns True if a file was written."""
        if self.doc is None or not self.doc.dirty:
            return False
        try:
            save_document(self.doc, self.sidecar_for(self.doc.path))
        except OSError as exc:
            if not self.locator.redirect_after_failure(self.doc.path.parent, exc):
                raise
            save_document(self.doc, self.sidecar_for(self.doc.path))
        return True

    def export_plan(self, all_images: bool = True) -> ExportPlan:
        """What an export of every image (or of the open one, added to an earlier export) writes."""
        paths = self.paths if all_images else [self.doc.path] if self.doc else []
        return plan_export(paths, self.doc, self._existing_sidecar, keep_other_images=not all_images)

    def export(
        self, out_dir: Path, labels: LabelList, progress: Callable[[int, int, str], bool] | None = None,
        all_images: bool = True, overwrite: bool = False,
    ) -> ExportSummary:
        """Export every annotated image of the project (or the open one); see :func:`export_items`."""
        return self.export_plan(all_images).run(out_dir, labels, progress, overwrite)
