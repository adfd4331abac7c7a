"""Readers for the 2-D slice folders of iSegFormer's medical benchmarks.

BraTS (``image/`` + ``annotation/``, non-zero = tumour), OAI-ZIB (``<split>/image/`` +
``<split>/annotations/``, each non-zero value one structure, e.g. femoral and tibial cartilage) and
ssTEM (``raw/*.tif`` + ``mitochondria/*.png``, each 4-connected component one object).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.datasets.paired import PairedFolderDataset


class BraTSDataset(PairedFolderDataset):
    """BraTS slices: non-zero in the first channel of the annotation = object 1."""

    LAYOUT = "<root>/image/<name>.png + <root>/annotation/<name>.png (0 bg, non-zero tumour)"
    IMAGES_DIR = "image"
    MASKS_DIR = "annotation"
    IMAGE_SUFFIXES = (".png",)
    MASK_SUFFIXES = (".png",)

    def decode_mask(self, path: Path) -> np.ndarray:
        return (self.read_mask_bgr(path)[:, :, 0] > 0).astype(np.int32)


class OAIZIBDataset(PairedFolderDataset):
    """OAI-ZIB knee slices of one split (default ``test``): each non-zero label value is one object."""

    LAYOUT = "<root>/test/image/<name>.png + <root>/test/annotations/<name>.png (0 bg, 1.. structures)"
    IMAGE_SUFFIXES = (".png",)
    MASK_SUFFIXES = (".png",)

    def __init__(self, root: str | Path, split: str = "test") -> None:
        self.IMAGES_DIR = f"{split}/image"
        self.MASKS_DIR = f"{split}/annotations"
        self.LAYOUT = self.LAYOUT.replace("/test/", f"/{split}/")
        super().__init__(root)

    def decode_mask(self, path: Path) -> np.ndarray:
        return self.read_mask_bgr(path)[:, :, 0].astype(np.int32)


class SsTEMDataset(PairedFolderDataset):
    """ssTEM: the 4-connected components of the mitochondria mask are the objects."""

    LAYOUT = "<root>/raw/<name>.tif + <root>/mitochondria/<name>.png (0 bg, non-zero mitochondria)"
    IMAGES_DIR = "raw"
    MASKS_DIR = "mitochondria"
    IMAGE_SUFFIXES = (".tif", ".tiff")
    MASK_SUFFIXES = (".png",)

    def decode_mask(self, path: Path) -> np.ndarray:
        foreground = self.read_mask_bgr(path)[:, :, 0]
        _, labels = cv2.connectedComponents(foreground, connectivity=4, ltype=cv2.CV_32S)
        return labels.astype(np.int32)
