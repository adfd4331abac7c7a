"""Intensity windows (level/width) and their presets.

The mapping to 8 bits is ``round(clip((v - (center - width / 2)) / width, 0, 1) * 255)``; it is the
single definition used by the app, the PNG slice export and therefore evaluation and training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (name, center, width) in Hounsfield units.
CT_PRESETS: tuple[tuple[str, float, float], ...] = (
    ("CT soft tissue", 40.0, 400.0),
    ("CT brain", 40.0, 80.0),
    ("CT lung", -600.0, 1500.0),
    ("CT bone", 400.0, 1800.0),
    ("CT abdomen", 60.0, 400.0),
)
# MR intensities have no absolute scale: these presets are percentiles of the volume's own histogram,
# (name, low percentile, high percentile, use only non-zero voxels).
MR_PRESETS: tuple[tuple[str, float, float, bool], ...] = (
    ("MR brain", 0.5, 99.5, True),
    ("MR knee/MSK", 1.0, 99.0, True),
)
_SAMPLE_SIZE = 1_000_000


@dataclass(frozen=True)
class WindowPreset:
    """A display/model-input window: values in [center - width/2, center + width/2] map to 0..255."""

    name: str
    center: float
    width: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.center) or not np.isfinite(self.width) or self.width <= 0:
            raise ValueError(f"window {self.name!r} needs a finite center and a width > 0, "
                             f"got center={self.center}, width={self.width}")

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    @classmethod
    def from_range(cls, name: str, low: float, high: float) -> WindowPreset:
        """A window covering [low, high] (a degenerate range becomes width 1)."""
        width = float(high - low) if high > low else 1.0
        return cls(name, float(low) + width / 2.0, width)


def apply_window(values: np.ndarray, window: WindowPreset) -> np.ndarray:
    """Window ``values`` (any shape, float) to uint8 of the same shape."""
    scale = np.float32(255.0 / window.width)
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(window.low)) * scale
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.rint(scaled).astype(np.uint8)


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // _SAMPLE_SIZE)
    return flat[::step]


def percentile_window(name: str, values: np.ndarray, low_pct: float, high_pct: float,
                      nonzero_only: bool = False) -> WindowPreset:
    """Window between two percentiles of ``values`` (a strided sample of at most ~1M voxels)."""
    sample = _sample(values)
    if nonzero_only and np.any(sample != 0):
        sample = sample[sample != 0]
    if sample.size == 0:
        return WindowPreset(name, 0.5, 1.0)
    low, high = np.percentile(sample, [low_pct, high_pct])
    return WindowPreset.from_range(name, float(low), float(high))


def full_range_window(values: np.ndarray) -> WindowPreset:
    """Window over the minimum..maximum of ``values``."""
    if values.size == 0:
        return WindowPreset("Full range", 0.5, 1.0)
    return WindowPreset.from_range("Full range", float(values.min()), float(values.max()))


def modality_presets(modality: str, values: np.ndarray) -> list[WindowPreset]:
    """Standard presets for ``modality`` ('CT' gets Hounsfield presets, anything else histogram ones)."""
    presets: list[WindowPreset] = []
    if modality.upper() == "CT":
        presets += [WindowPreset(name, center, width) for name, center, width in CT_PRESETS]
    else:
        presets += [percentile_window(name, values, lo, hi, nz) for name, lo, hi, nz in MR_PRESETS]
    presets.append(full_range_window(values))
    return presets
