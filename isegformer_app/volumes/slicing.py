"""Axial/coronal/sagittal 2-D views of a display-oriented ``(z, y, x)`` array.

* axial ``index`` = z: ``array[z]`` -> ``(y, x)``.
* coronal ``index`` = y: ``array[:, y, :]`` flipped so superior is at the top -> ``(z, x)``.
* sagittal ``index`` = x: ``array[:, :, x]`` flipped so superior is at the top -> ``(z, y)``.

Images and label maps use the same functions, so a mask drawn on a view lands on the right voxels.
"""

from __future__ import annotations

import numpy as np

AXES: tuple[str, ...] = ("axial", "coronal", "sagittal")
_ARRAY_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}


def array_axis(axis: str) -> int:
    """Array axis (of ``(z, y, x)``) that ``axis`` ('axial', 'coronal', 'sagittal') indexes."""
    try:
        return _ARRAY_AXIS[axis]
    except KeyError:
        raise ValueError(f"unknown view axis {axis!r}; use one of {', '.join(AXES)}") from None


def slice_count(shape_zyx: tuple[int, ...], axis: str) -> int:
    """Number of slices along ``axis`` for a ``(z, y, x)`` shape."""
    return int(shape_zyx[array_axis(axis)])


def _check_index(shape_zyx: tuple[int, ...], axis: str, index: int) -> None:
    count = slice_count(shape_zyx, axis)
    if not 0 <= index < count:
        raise IndexError(f"{axis} slice {index} is out of range 0..{count - 1}")


def extract_slice(array_zyx: np.ndarray, axis: str, index: int) -> np.ndarray:
    """The 2-D view (a copy) of ``array_zyx`` (``(z, y, x)``) at ``index`` along ``axis``."""
    _check_index(array_zyx.shape, axis, index)
    if axis == "axial":
        return array_zyx[index].copy()
    if axis == "coronal":
        return array_zyx[::-1, index, :].copy()
    return array_zyx[::-1, :, index].copy()


def insert_slice(array_zyx: np.ndarray, axis: str, index: int, values: np.ndarray) -> None:
    """Write the 2-D view ``values`` (as returned by ``extract_slice``) back into ``array_zyx``."""
    _check_index(array_zyx.shape, axis, index)
    expected = view_shape(array_zyx.shape, axis)
    if tuple(values.shape) != expected:
        raise ValueError(f"{axis} slice must have shape {expected}, got {tuple(values.shape)}")
    if axis == "axial":
        array_zyx[index] = values
    elif axis == "coronal":
        array_zyx[::-1, index, :] = values
    else:
        array_zyx[::-1, :, index] = values


def view_to_voxel(shape_zyx: tuple[int, ...], axis: str, index: int, row: int,
                  col: int) -> tuple[int, int, int]:  # fmt: skip
    """The ``(z, y, x)`` voxel under pixel ``(row, col)`` of the view at ``index`` along ``axis``
    (the inverse of :func:`extract_slice`'s layout)."""
    z_count = int(shape_zyx[-3])
    if axis == "axial":
        return index, row, col
    if axis == "coronal":
        return z_count - 1 - row, index, col
    _name(axis)
    return z_count - 1 - row, col, index


def voxel_to_view(shape_zyx: tuple[int, ...], axis: str, zyx: tuple[int, int, int]) -> tuple[int, int]:
    """The ``(row, col)`` of voxel ``zyx`` in a view along ``axis`` (through that voxel)."""
    z, y, x = zyx
    top = int(shape_zyx[-3]) - 1
    return {"axial": (y, x), "coronal": (top - z, x), "sagittal": (top - z, y)}[_name(axis)]


def view_shape(shape_zyx: tuple[int, ...], axis: str) -> tuple[int, int]:
    """(height, width) of a view along ``axis``."""
    z, y, x = shape_zyx[-3:]
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[_name(axis)]


def pixel_aspect(spacing_zyx: tuple[float, float, float], axis: str) -> float:
    """Height / width of one view pixel in mm (draw the view with this aspect ratio)."""
    sz, sy, sx = spacing_zyx
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[_name(axis)]


def _name(axis: str) -> str:
    array_axis(axis)
    return axis
