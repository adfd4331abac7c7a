"""Where the slices of a DICOM series go on a regular voxel grid — decided from their positions only.

:func:`plan_slice_grid` turns the frames' ``ImagePositionPatient`` into a :class:`SliceGrid`: for each
grid slice ``k`` the frames it is made of (one frame; none for a missing slice, filled blank; two with
weights where irregular spacing had to be resampled), the world origin and step, and — for a gantry
tilt — the in-plane shift that puts the sheared stack onto an orthogonal grid (as dcm2niix and 3D
Slicer do; ITK-based readers drop the shear of a sheared affine). A tilt is only seen when the slices
drift in-plane by more than the position tolerance over the whole stack, and the orthogonal grid then
grows in-plane to hold every written pixel (see ``dicom_load._build_stack``).

The slice spacing is a least-squares fit of the positions against their slice numbers, so positions
that were rounded when written (0.625 mm slices stored to 0.1 mm) or jitter do not add up along the
stack the way a median of gaps does; no slice is moved from where its file says it is by more than
that rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dicom_frames import DicomFrame
from .errors import VolumeError

POSITION_TOLERANCE_MM = 1e-3  # slices closer than this share a position (echoes, time points)


@dataclass
class SliceGrid:
    """The regular grid of a slice stack, in DICOM LPS millimetres."""

    sources: list[list[tuple[int, float]]]  # per grid slice k: (frame index, weight); [] = missing slice
    origin: np.ndarray  # LPS position of pixel (row 0, column 0) of grid slice 0
    step: np.ndarray  # LPS step from grid slice k to k + 1 (along the slice normal, or against it)
    spacing: float  # |step|
    resample_in_plane: bool = False  # gantry tilt: shift each frame in-plane onto the orthogonal grid

    def slice_origin(self, k: int) -> np.ndarray:
        """LPS position of pixel (row 0, column 0) of grid slice ``k``."""
        return self.origin + self.step * k

    @property
    def n_slices(self) -> int:
        return len(self.sources)

    def frame_of(self, k: int) -> int | None:
        """The one frame grid slice ``k`` shows unchanged, or None (blank or resampled)."""
        source = self.sources[k]
        return source[0][0] if len(source) == 1 and source[0][1] == 1.0 else None


def _tolerance(spacing: float) -> float:
    """How far a position may sit from the fitted grid and still be that grid slice (rounding, jitter)."""
    return max(0.1, 0.1 * spacing)


def fill_missing_positions(frames: list[DicomFrame], normal: np.ndarray, warnings: list[str]) -> bool:
    """Give frames without ImagePositionPatient a position from their InstanceNumber, fitted on the
    frames that have both; False (nothing changed) if fewer than two frames have a position."""
    known = [f for f in frames if f.position is not None]
    missing = [f for f in frames if f.position is None]
    if not missing or len({f.instance_number for f in known}) < 2:
        return not missing
    numbers = np.array([f.instance_number for f in known], dtype=np.float64)
    positions = np.stack([f.position for f in known])
    design = np.stack([np.ones_like(numbers), numbers], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, positions, rcond=None)  # position = a + b * number
    for frame in missing:
        frame.position = coefficients[0] + coefficients[1] * float(frame.instance_number)
    warnings.append(f"{len(missing)} slice(s) without ImagePositionPatient were placed by their "
                    f"InstanceNumber along the {len(known)} slices that have one")  # fmt: skip
    return True


def plan_slice_grid(frames: list[DicomFrame], order: list[int], normal: np.ndarray,
                    warnings: list[str], keep_file_order: bool = False) -> SliceGrid:  # fmt: skip
    """The grid of ``frames[order]`` (sorted along ``normal``, one per position, at least two).

    ``keep_file_order``: when the frames of one multi-frame file run against the normal, the grid keeps
    that order (k follows the frames, as ITK tools read such a file) instead of sorting it.
    """
    positions = np.stack([frames[i].position for i in order])
    distances = positions @ normal
    n = len(order)
    uniform = (distances[-1] - distances[0]) / (n - 1)
    slots = np.arange(n, dtype=np.float64)
    if np.max(np.abs(distances - (distances[0] + slots * uniform))) > _tolerance(uniform):
        gaps = np.diff(distances)  # missing slices: count slots gap by gap, so rounding cannot drift
        base = float(np.median(gaps))
        slots = np.concatenate([[0.0], np.cumsum(np.maximum(np.rint(gaps / base), 1.0))])
    _check_extent(int(slots[-1]) + 1, n, distances)
    spacing, intercept = _fit_line(slots, distances)
    residual = np.abs(distances - (intercept + slots * spacing))
    if np.max(residual) <= _tolerance(spacing):
        count = int(slots[-1]) + 1
        sources: list[list[tuple[int, float]]] = [[] for _ in range(count)]
        for frame, slot in zip(order, slots.astype(int), strict=True):
            sources[slot] = [(frame, 1.0)]
        if count > n:
            warnings.append(f"{count - n} slice(s) are missing from the series (gaps of "
                            f"{np.diff(distances).max():.4g} mm between {spacing:.4g} mm slices): "
                            "they are left blank, every other slice stays at its position")  # fmt: skip
    else:
        spacing = float(np.median(np.diff(distances)))
        count = int(np.floor((distances[-1] - distances[0]) / spacing + 1e-6)) + 1
        _check_extent(count, n, distances)
        intercept = float(distances[0])
        targets = intercept + np.arange(count) * spacing
        sources = []
        for target in targets:
            upper = int(np.clip(np.searchsorted(distances, target), 1, n - 1))
            low, high = distances[upper - 1], distances[upper]
            weight = float(np.clip((target - low) / (high - low), 0.0, 1.0))
            if weight < 1e-6:
                sources.append([(order[upper - 1], 1.0)])
            elif weight > 1 - 1e-6:
                sources.append([(order[upper], 1.0)])
            else:
                sources.append([(order[upper - 1], 1.0 - weight), (order[upper], weight)])
        gaps = np.diff(distances)
        warnings.append(f"irregular slice spacing ({gaps.min():.4g}..{gaps.max():.4g} mm): resampled "
                        f"(linear) onto {count} slices every {spacing:.4g} mm")  # fmt: skip
    # in-plane drift of the positions from slice to slice = a gantry tilt (sheared stack)
    in_plane = positions - np.outer(distances, normal)
    grid_k = (distances - intercept) / spacing
    drift, plane_intercept = np.polyfit(grid_k, in_plane, 1)  # per LPS axis: in-plane mm per slice
    # a tilt only when the drift over the whole stack exceeds what rounding of the positions explains
    # (positions written to 0.1 mm drift ~0.03 mm over 8-12 oblique slices: not a tilt)
    tilted = bool(np.linalg.norm(drift) * max(grid_k[-1] - grid_k[0], 1.0) > _tolerance(spacing))
    if tilted:
        angle = np.degrees(np.arctan2(np.linalg.norm(drift), spacing))
        warnings.append(f"gantry tilt of {angle:.2f}°: slices resampled onto an orthogonal grid "
                        "(as dcm2niix and 3D Slicer do): every reader places labels alike")  # fmt: skip
        plane_origin = plane_intercept
    else:
        plane_origin = in_plane[0]
    origin = plane_origin + normal * intercept
    grid = SliceGrid(sources, origin, normal * spacing, float(spacing), tilted)
    return _reversed(grid) if keep_file_order else grid


MAX_GRID_FACTOR = 4  # a grid may hold up to this many times the real slices (missing ones left blank)


def _check_extent(count: int, n: int, distances: np.ndarray) -> None:
    """Refuse positions that span far more slices than there are (two stacks, a stray localizer):
    filling the distance would make a mostly blank volume of any size."""
    if count > MAX_GRID_FACTOR * n:
        raise VolumeError(f"the {n} slices span {distances[-1] - distances[0]:.4g} mm, room for {count} "
                          "slices: they are not one evenly spaced stack (choose the files of one stack)")


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ``y ≈ intercept + slope * x``."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _reversed(grid: SliceGrid) -> SliceGrid:
    """The same grid with k running the other way (origin at the old last slice)."""
    origin = grid.slice_origin(grid.n_slices - 1)
    return SliceGrid(grid.sources[::-1], origin, -grid.step, grid.spacing, grid.resample_in_plane)
