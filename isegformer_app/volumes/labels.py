"""Label volumes: one integer label per voxel (0 = background), uint8 up to 255 labels, else uint16."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

import cv2
import numpy as np

from . import slicing
from .errors import VolumeError

MAX_LABEL = 65535
# Distinct colours for labels 1, 2, ... (cycled); label 0 is always transparent black.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (255, 239, 213), (0, 0, 205), (205, 133, 63), (210, 180, 140), (102, 205, 170), (0, 0, 128),
    (0, 139, 139), (46, 139, 87), (255, 228, 225), (106, 90, 205), (221, 160, 221), (233, 150, 122),
)


@dataclass
class LabelInfo:
    """Name and display colour (RGB 0..255, opacity 0..1) of one label value."""

    value: int
    name: str
    color: tuple[int, int, int]
    opacity: float = 1.0
    visible: bool = True


def default_label_info(value: int) -> LabelInfo:
    """``Label <value>`` with a palette colour (label 0 is "Clear Label", transparent)."""
    if value == 0:
        return LabelInfo(0, "Clear Label", (0, 0, 0), 0.0, False)
    return LabelInfo(value, f"Label {value}", PALETTE[(value - 1) % len(PALETTE)])


def dtype_for(max_value: int) -> np.dtype:
    """uint8 for labels up to 255, uint16 up to 65535."""
    if max_value < 0 or max_value > MAX_LABEL:
        raise VolumeError(f"label values must be in 0..{MAX_LABEL}, got {max_value}")
    return np.dtype(np.uint8) if max_value <= 255 else np.dtype(np.uint16)


@dataclass
class LabelVolume:
    """Labels of a ``Volume``.

    ``data``: ``(z, y, x)`` uint8/uint16 in the volume's display orientation; ``labels``: names/colours.
    ``name_present`` (init only): give every label value found in ``data`` a default name/colour (a scan
    of the whole volume; :meth:`empty` skips it, there is nothing to find).
    """

    data: np.ndarray
    labels: dict[int, LabelInfo] = field(default_factory=dict)
    name_present: InitVar[bool] = True

    def __post_init__(self, name_present: bool) -> None:
        if self.data.ndim != 3:
            raise VolumeError(f"a label volume is (z, y, x), got shape {self.data.shape}")
        if self.data.dtype not in (np.uint8, np.uint16):
            raise VolumeError(f"label volumes are uint8 or uint16, got {self.data.dtype}")
        if name_present:
            for value in self.present_values():
                self.labels.setdefault(value, default_label_info(value))

    @classmethod
    def empty(cls, shape_zyx: tuple[int, int, int], max_label: int = 255) -> LabelVolume:
        """All-background labels of ``shape_zyx`` (no scan of the new zeros)."""
        return cls(np.zeros(shape_zyx, dtype=dtype_for(max_label)), name_present=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.data.shape
        return int(z), int(y), int(x)

    def present_values(self) -> list[int]:
        """Sorted non-zero label values present in the data.

        An all-background volume costs one ``count_nonzero`` (~1 ms for 24 M voxels); uint8 labels are
        counted with OpenCV's histogram, uint16 ones with a bincount of the labelled voxels only.
        """
        flat = self.data.reshape(-1)
        if not np.count_nonzero(flat):
            return []
        if self.data.dtype == np.uint8:
            rows = flat.reshape(-1, self.data.shape[-1])  # 2-D for OpenCV
            counts = cv2.calcHist([rows], [0], None, [256], [0, 256]).ravel()
        else:
            counts = np.bincount(flat[flat != 0], minlength=1)
        return [int(v) for v in np.flatnonzero(counts) if v != 0]

    def ensure_value(self, value: int) -> None:
        """Make ``value`` storable (switching to uint16 above 255) and give it a name/colour."""
        if np.iinfo(self.data.dtype).max < value:
            self.data = self.data.astype(dtype_for(value))
        elif value < 0:
            dtype_for(value)
        if value != 0:
            self.labels.setdefault(value, default_label_info(value))

    def get_slice(self, axis: str, index: int) -> np.ndarray:
        """2-D label view (copy), oriented like ``Volume.slice_image``."""
        return slicing.extract_slice(self.data, axis, index)

    def set_slice(self, axis: str, index: int, values: np.ndarray) -> None:
        """Replace one 2-D label view (values must fit the label range)."""
        peak = int(values.max()) if values.size else 0
        self.ensure_value(peak)
        for value in np.unique(values):
            self.ensure_value(int(value))
        slicing.insert_slice(self.data, axis, index, values.astype(self.data.dtype))

    def paint(self, axis: str, index: int, mask: np.ndarray, value: int) -> None:
        """Set the voxels under boolean ``mask`` (a 2-D view) to ``value`` (0 erases)."""
        self.ensure_value(value)
        current = self.get_slice(axis, index)
        if mask.shape != current.shape:
            raise ValueError(f"mask shape {mask.shape} does not match the {axis} view {current.shape}")
        current[mask.astype(bool)] = value
        slicing.insert_slice(self.data, axis, index, current)
