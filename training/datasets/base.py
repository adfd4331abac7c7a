"""Common pieces of the evaluation dataset readers: the sample, the reader base class, the error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.evaluation.noc import object_gt_mask
from model.untrusted import ImageTooLarge, PathOutsideFolder, check_image_size, imread_checked, path_inside

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DatasetError(Exception):
    """A dataset folder is missing or does not have the layout its reader expects."""

    def __init__(self, path: str | Path, layout: str, problem: str) -> None:
        self.path = Path(path)
        self.layout = layout
        super().__init__(f"{problem}: {self.path}\nexpected layout: {layout}")


@dataclass
class Sample:
    """One annotated image.

    ``image``: HxWx3 uint8 RGB. ``instances``: HxW int32, 0 = background, -1 = ignored (left out of the
    IoU and never clicked), each positive value one object.
    """

    name: str
    image: np.ndarray
    instances: np.ndarray

    @property
    def object_ids(self) -> list[int]:
        """Positive ids present in ``instances``, ascending."""
        ids = np.unique(self.instances)
        return [int(i) for i in ids if i > 0]

    def gt_mask(self, object_id: int) -> np.ndarray:
        """HxW int32 mask of one object: 1 = object, -1 = ignored, 0 = everything else."""
        return object_gt_mask(self.instances, object_id)


class EvalDataset:
    """Base reader: ``len(ds)`` samples, ``ds[i]`` -> :class:`Sample`, loaded lazily.

    Subclasses set ``LAYOUT`` (a one-line description shown in errors) and implement
    :meth:`_names` and :meth:`_load`.
    """

    LAYOUT = ""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            self.fail(self.root, "dataset folder not found")
        self.names: list[str] = self._names()
        if not self.names:
            self.fail(self.root, "no samples found")

    def fail(self, path: Path, problem: str) -> None:
        """Raise the one error of this module for ``path``."""
        raise DatasetError(path, self.LAYOUT, problem)

    def checked_ids(self, list_path: Path, ids: list[str]) -> list[str]:
        """``ids`` read from ``list_path``, each checked to name a file inside the dataset folder (an id
        such as ``../../etc/passwd`` or ``/etc/hostname`` fails with the file that listed it)."""
        for sample_id in ids:
            try:
                path_inside(self.root, sample_id)
            except PathOutsideFolder as error:
                self.fail(list_path, f"listed sample {error}")
        return ids

    def read_id_list(self, list_path: Path) -> list[str]:
        """The sample ids of a split list (one a line, blank lines skipped), see :meth:`checked_ids`."""
        if not list_path.is_file():
            self.fail(list_path, "split list not found")
        lines = list_path.read_text().splitlines()
        return self.checked_ids(list_path, [line.strip() for line in lines if line.strip()])

    def require_dir(self, path: Path) -> Path:
        """``path`` if it is a folder, else a :class:`DatasetError`."""
        if not path.is_dir():
            self.fail(path, "folder not found")
        return path

    def _names(self) -> list[str]:
        raise NotImplementedError

    def _load(self, name: str) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        return self._load(self.names[index])

    def __iter__(self) -> Iterator[Sample]:
        for name in self.names:
            yield self._load(name)

    # -- file helpers -------------------------------------------------------------------------------

    def read_rgb(self, path: Path) -> np.ndarray:
        """HxWx3 uint8 RGB (grey images are replicated)."""
        return np.ascontiguousarray(self._imread(path, cv2.IMREAD_COLOR, "image")[:, :, ::-1])

    def read_mask_bgr(self, path: Path) -> np.ndarray:
        """HxWx3 uint8 as the original code reads masks (``cv2.imread`` in colour, BGR order)."""
        return self._imread(path, cv2.IMREAD_COLOR, "mask")

    def read_mask_raw(self, path: Path) -> np.ndarray:
        """The mask file's own values (uint8/uint16, HxW or HxWxC)."""
        return self._imread(path, cv2.IMREAD_UNCHANGED, "mask")

    def _imread(self, path: Path, flags: int, what: str) -> np.ndarray:
        """Decode ``path`` once its header is known to declare a sane size (a decompression bomb fails)."""
        try:
            image = imread_checked(path, flags)
        except ImageTooLarge as error:
            self.fail(path, f"{what} too large to read ({error})")
        if image is None:
            self.fail(path, f"missing or unreadable {what}")
        return image

    def check_shapes(self, path: Path, image: np.ndarray, instances: np.ndarray) -> None:
        """Fail when the mask and image sizes differ."""
        if instances.shape != image.shape[:2]:
            self.fail(path, f"mask size {instances.shape} differs from image size {image.shape[:2]}")


def image_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files of ``folder`` with an image suffix, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def files_by_stem(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """``{stem: path}`` of the image files of ``folder``."""
    return {p.stem: p for p in image_files(folder, suffixes)}


def oversized_images(root: Path) -> list[str]:
    """The image files under ``root`` whose headers declare more pixels than can be read (decompression
    bombs), as "path: why"; only headers are read, so a dataset is checked before a run, not during it."""
    problems = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            try:
                check_image_size(path)
            except ImageTooLarge as error:
                problems.append(f"{path}: {error}")
    return problems
