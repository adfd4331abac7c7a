"""Replace NaN/Inf voxels so windows, statistics and the model never see them."""

from __future__ import annotations

import numpy as np


def replace_non_finite(voxels: np.ndarray, warnings: list[str]) -> None:
    """In place: NaN -> 0, +Inf -> the largest finite value, -Inf -> the smallest; adds a warning if any."""
    finite = np.isfinite(voxels)
    if finite.all():
        return
    bad = int(voxels.size - np.count_nonzero(finite))
    nan_count = int(np.count_nonzero(np.isnan(voxels)))
    if finite.any():
        low, high = float(voxels[finite].min()), float(voxels[finite].max())
    else:
        low = high = 0.0
    np.nan_to_num(voxels, copy=False, nan=0.0, posinf=high, neginf=low)
    warnings.append(f"{bad} non-finite voxel(s) replaced ({nan_count} NaN -> 0, +/-Inf -> {high:g}/{low:g})")
