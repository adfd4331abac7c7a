"""The app's export format: ``images/<stem>.<ext>`` + ``masks/<stem>.png``.

Masks are single-channel uint8 or uint16 PNGs of instance ids (0 = background, each other value
one object). An optional ``ignore/<stem>.png`` (single-channel, non-zero = ignored) marks pixels left
out of the IoU and never clicked, such as VOC's void border in ``offline_assets``' ``voc`` set; the app
writes none. Images of 16 bits (or floats) are stretched to their own min..max, as the app shows them,
so a model trained or evaluated on an export sees what the annotator saw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from model.evaluation.clicker import IGNORE_LABEL
from model.image import stretch_to_uint8
from training.datasets.base import Sample, files_by_stem
from training.datasets.paired import PairedFolderDataset


class ExportDataset(PairedFolderDataset):
    """A folder exported by the isegformer app."""

    LAYOUT = (
        "<root>/images/<stem>.png|jpg + <root>/masks/<stem>.png (uint8/uint16 instance ids, 0 = bg)"
        " [+ <root>/ignore/<stem>.png (non-zero = ignored)]"
    )
    IMAGES_DIR = "images"
    MASKS_DIR = "masks"
    IGNORE_DIR = "ignore"
    MASK_SUFFIXES = (".png",)

    def _names(self) -> list[str]:
        names = super()._names()
        ignore_dir = self.root / self.IGNORE_DIR
        self._ignore = files_by_stem(ignore_dir, self.MASK_SUFFIXES) if ignore_dir.is_dir() else {}
        return names

    def _load(self, name: str) -> Sample:
        sample = super()._load(name)
        path = self._ignore.get(name)
        if path is not None:
            ignored = self.read_mask_raw(path)
            if ignored.ndim != 2:
                self.fail(path, f"expected a single-channel ignore mask, got shape {ignored.shape}")
            self.check_shapes(path, sample.image, ignored)
            sample.instances[ignored != 0] = IGNORE_LABEL
        return sample

    def read_rgb(self, path: Path) -> np.ndarray:
        """HxWx3 uint8 RGB with the EXIF orientation applied; deeper data stretched to its min..max."""
        image = self._imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH, "image")
        if image.dtype != np.uint8:
            image = stretch_to_uint8(image)
        return np.ascontiguousarray(image[:, :, ::-1])

    def decode_mask(self, path: Path) -> np.ndarray:
        values = self.read_mask_raw(path)
        if values.ndim != 2 or values.dtype not in (np.uint8, np.uint16):
            self.fail(path, f"expected a single-channel uint8/uint16 mask, got {values.dtype} {values.shape}")
        return values.astype(np.int32)


def held_out_split(names: Sequence[str], fraction: float) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) of an export's images: the ``round(fraction * n)`` names (at
    least one, never all) that come first when sorted by a SHA-1 of the name, so the split depends neither
    on the listing order nor on the run. Fewer than 2 names: all train, none held out."""
    if len(names) < 2:
        return list(range(len(names))), []
    order = sorted(range(len(names)), key=lambda i: hashlib.sha1(names[i].encode("utf-8")).hexdigest())
    held = set(order[: min(len(names) - 1, max(1, round(fraction * len(names))))])
    return [i for i in range(len(names)) if i not in held], sorted(held)
