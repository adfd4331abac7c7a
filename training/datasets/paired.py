"""Readers for layouts with an image folder and a mask folder matched by file stem.

GrabCut and Berkeley (0 = background, 128 = ignored band, >128 = object), DAVIS and COCO_MVal
(any non-zero colour = object), as read by the original RITM / iSegFormer code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.datasets.base import IMAGE_SUFFIXES, EvalDataset, Sample, files_by_stem, image_files


class PairedFolderDataset(EvalDataset):
    """``<root>/<IMAGES_DIR>/<stem>.<ext>`` + ``<root>/<MASKS_DIR>/<stem>.<ext>``; subclasses decode masks."""

    IMAGES_DIR = "images"
    MASKS_DIR = "masks"
    IMAGE_SUFFIXES = IMAGE_SUFFIXES
    MASK_SUFFIXES = IMAGE_SUFFIXES

    def _names(self) -> list[str]:
        images_dir = self.require_dir(self.root / self.IMAGES_DIR)
        masks_dir = self.require_dir(self.root / self.MASKS_DIR)
        self._images = {p.stem: p for p in image_files(images_dir, self.IMAGE_SUFFIXES)}
        self._masks = files_by_stem(masks_dir, self.MASK_SUFFIXES)
        for stem, path in self._images.items():
            if stem not in self._masks:
                self.fail(path, f"no mask named {stem}.* in {masks_dir}")
        return list(self._images)

    def _load(self, name: str) -> Sample:
        image = self.read_rgb(self._images[name])
        instances = self.decode_mask(self._masks[name])
        self.check_shapes(self._masks[name], image, instances)
        return Sample(name=name, image=image, instances=instances)

    def decode_mask(self, path: Path) -> np.ndarray:
        """HxW int32 instance mask of the file at ``path``."""
        raise NotImplementedError


class GrabCutDataset(PairedFolderDataset):
    """GrabCut: first channel of the mask, 128 -> ignored (-1), >128 -> object 1 (value 1 also kept as 1)."""

    LAYOUT = "<root>/data_GT/<name>.jpg|bmp + <root>/boundary_GT/<name>.bmp (0 bg, 128 ignore, 255 object)"
    IMAGES_DIR = "data_GT"
    MASKS_DIR = "boundary_GT"

    def decode_mask(self, path: Path) -> np.ndarray:
        values = self.read_mask_bgr(path)[:, :, 0].astype(np.int32)
        instances = ((values > 128) | (values == 1)).astype(np.int32)
        instances[values == 128] = -1
        return instances


class BerkeleyDataset(GrabCutDataset):
    """Berkeley: the GrabCut mask convention in ``images/`` + ``masks/``."""

    LAYOUT = "<root>/images/<name>.jpg + <root>/masks/<name>.png (0 bg, 128 ignore, 255 object)"
    IMAGES_DIR = "images"
    MASKS_DIR = "masks"


class DavisDataset(PairedFolderDataset):
    """DAVIS (the 345 frames of RITM's evaluation set): any non-zero mask colour is the object."""

    LAYOUT = "<root>/img/<name>.jpg + <root>/gt/<name>.png (0 bg, non-zero object)"
    IMAGES_DIR = "img"
    MASKS_DIR = "gt"

    def decode_mask(self, path: Path) -> np.ndarray:
        return (self.read_mask_bgr(path).max(axis=2) > 0).astype(np.int32)


class CocoMValDataset(DavisDataset):
    """COCO_MVal: same layout and convention as DAVIS."""
