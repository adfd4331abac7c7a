"""The one conversion of an input image to the HxWx3 uint8 RGB every predictor and engine works on.

Deeper data (16-bit scans, floats beyond [0, 1]) is stretched linearly from its own min..max, as the
app's image reader and the export reader show and export it.
"""

from __future__ import annotations

import numpy as np


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Deep data (16-bit, 32-bit, float) stretched linearly from its own finite min..max to 0..255 uint8;
    NaN and infinities count as the lowest value, a constant image becomes 0. The one rule of the app's
    image reader, the export reader and :func:`as_rgb_uint8`."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    low, high = (float(array[finite].min()), float(array[finite].max())) if finite.any() else (0.0, 0.0)
    array = np.where(finite, array, low)
    scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 numeric array -> C-contiguous, writable HxWx3 uint8 (alpha dropped,
    gray repeated in the three channels).

    uint8 is kept; floats in [0, 1] are scaled by 255; other values within [0, 255] are rounded; values
    beyond that range (e.g. 16-bit scans) are stretched linearly from their min..max. Anything else
    raises ValueError ("image must be ...").
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W[, 1|3|4]), got {type(image).__name__}")
    array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    layout_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    numeric = np.issubdtype(array.dtype, np.number) or array.dtype == bool
    if not layout_ok or not numeric or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            "image must be a non-empty numeric array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {image.shape}, dtype {image.dtype}"
        )
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        values = np.nan_to_num(array.astype(np.float32))
        low, high = float(values.min()), float(values.max())
        if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
            array = np.clip(values * 255.0, 0, 255).round().astype(np.uint8)
        elif low < 0.0 or high > 255.0:
            array = stretch_to_uint8(array)
        else:
            array = np.clip(values, 0, 255).round().astype(np.uint8)
    array = np.ascontiguousarray(array)  # torch.from_numpy needs positive strides ...
    return array if array.flags.writeable else array.copy()  # ... and a writable buffer
