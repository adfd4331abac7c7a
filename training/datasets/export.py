"""The app's export format: ``images/<stem>.<ext>`` + ``masks/<stem>.png``.

Masks are single-channel uint8 or uint16 PNGs of instance ids (0 = background, each other value
one object); there is no ignore label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.datasets.paired import PairedFolderDataset


class ExportDataset(PairedFolderDataset):
    """A folder exported by the isegformer app."""

    LAYOUT = "<root>/images/<stem>.png|jpg + <root>/masks/<stem>.png (uint8/uint16 instance ids, 0 = bg)"
    IMAGES_DIR = "images"
    MASKS_DIR = "masks"
    MASK_SUFFIXES = (".png",)

    def decode_mask(self, path: Path) -> np.ndarray:
        values = self.read_mask_raw(path)
        if values.ndim != 2 or values.dtype not in (np.uint8, np.uint16):
            self.fail(path, f"expected a single-channel uint8/uint16 mask, got {values.dtype} {values.shape}")
        return values.astype(np.int32)
