"""Per-slice PNG export in the layouts the BraTS and OAI-ZIB evaluation readers accept.

* ``brats``: ``<root>/image/<name>.png`` (RGB) and ``<root>/annotation/<name>.png`` (label ids; the
  reader treats every non-zero value as the object).
* ``oai_zib``: ``<root>/<split>/image/<name>.png`` and ``<root>/<split>/annotations/<name>.png``
  (label ids 1..255, each one an object).

``<name>`` is ``<case>_<axis>_<index:04d>`` with only ``[A-Za-z0-9_-]`` (the readers pair image and mask
by the text before the first dot). Images are ``Volume.slice_image`` output (the model input); masks
are single-channel 8-bit PNGs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.atomic_io import atomic_write_bytes

from .errors import VolumeError
from .labels import LabelVolume
from .progress import CancelFlag, ProgressCallback
from .volume import ModelInput, Volume, WindowChoice

LAYOUTS = ("brats", "oai_zib")


@dataclass(frozen=True)
class ExportedSlice:
    index: int
    image_path: Path
    mask_path: Path


def layout_dirs(root: Path | str, layout: str, split: str = "test") -> tuple[Path, Path]:
    """(image folder, mask folder) of ``layout`` under ``root``."""
    root = Path(root)
    if layout == "brats":
        return root / "image", root / "annotation"
    if layout == "oai_zib":
        return root / split / "image", root / split / "annotations"
    raise VolumeError(f"unknown slice layout {layout!r}; use one of {LAYOUTS}")


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "case"


def _png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise VolumeError("PNG encoding failed")
    return encoded.tobytes()


def export_slices_png(volume: Volume, labels: LabelVolume, root: Path | str, case: str, layout: str = "brats",
                      axis: str = "axial", split: str = "test", window: WindowChoice = None,
                      model_input: ModelInput | None = None,
                      only_labelled: bool = True, progress: ProgressCallback | None = None,
                      cancel: CancelFlag | None = None) -> list[ExportedSlice]:  # fmt: skip
    """Write image/mask PNG pairs for the slices along ``axis`` (only those with labels by default).

    ``progress(fraction, message)`` follows the slices; ``cancel`` set stops before the next slice
    (the pairs written so far are kept and returned).
    """
    if labels.shape != volume.shape:
        raise VolumeError(f"label volume shape {labels.shape} does not match the image {volume.shape}")
    image_dir, mask_dir = layout_dirs(root, layout, split)
    if labels.data.size and int(labels.data.max()) > 255:
        raise VolumeError("PNG masks hold label ids up to 255; this label volume has larger values")
    stem = safe_name(case)
    written = []
    total = volume.slice_count(axis)
    for index in range(total):
        if cancel is not None and cancel.is_set():
            break
        if progress is not None:
            progress(index / total, f"slice {index + 1}/{total}")
        mask = labels.get_slice(axis, index).astype(np.uint8)
        if only_labelled and not mask.any():
            continue
        name = f"{stem}_{axis}_{index:04d}.png"
        rgb = volume.slice_image(axis, index, window, model_input)
        atomic_write_bytes(image_dir / name, _png(np.ascontiguousarray(rgb[:, :, ::-1])))
        atomic_write_bytes(mask_dir / name, _png(mask))
        written.append(ExportedSlice(index, image_dir / name, mask_dir / name))
    return written
