"""The app's export format: ``images/<stem>.<ext>`` + ``masks/<stem>.png``.

Masks are single-channel uint8 or uint16 PNGs of instance ids (0 = background, each other value
one object); there is no ignore label. Images of 16 bits (or floats) are stretched to their own
min..max, as the app shows them, so a model trained or evaluated on an export sees what the annotator saw.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.image import stretch_to_uint8
from training.datasets.paired import PairedFolderDataset


class ExportDataset(PairedFolderDataset):
    """A folder exported by the isegformer app."""

    LAYOUT = "<root>/images/<stem>.png|jpg + <root>/masks/<stem>.png (uint8/uint16 instance ids, 0 = bg)"
    IMAGES_DIR = "images"
    MASKS_DIR = "masks"
    MASK_SUFFIXES = (".png",)

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
