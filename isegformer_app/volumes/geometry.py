"""Voxel-to-world geometry: LPS (DICOM) and RAS (NIfTI/nibabel) affines and the display orientation.

Conventions used throughout ``isegformer_app.volumes``:

* A ``Volume`` stores voxels as ``(z, y, x)``; its affines map the index column ``(x, y, z, 1)`` to mm.
* ``Volume.affine`` is the RAS affine (what nibabel writes to NIfTI); ``Volume.affine_lps`` the DICOM
  LPS one; they differ by ``diag(-1, -1, 1, 1)``.
* Every loaded volume is re-oriented (axis flips/permutations only, no resampling) so that x points to
  the patient's Left, y to Posterior and z to Superior, as close as the acquisition allows. Axial
  slices then show the patient's right on the image left and anterior at the top (radiological view).
* ``SourceGeometry`` remembers the file's own voxel grid so labels are written back in that grid,
  with the file's affine and qform/sform codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DISPLAY_AXCODES = ("L", "P", "S")


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert a 4x4 LPS affine to RAS (the same matrix converts RAS to LPS)."""
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)


ras_to_lps = lps_to_ras


def affine_from_dicom(origin_lps: np.ndarray, row_cosine: np.ndarray, column_cosine: np.ndarray,
                      column_spacing: float, row_spacing: float, slice_step_lps: np.ndarray) -> np.ndarray:
    """LPS affine of a DICOM slice stack for index ``(column, row, slice, 1)``.

    ``row_cosine``/``column_cosine`` are ImageOrientationPatient[:3]/[3:] (the directions in which the
    column index and the row index grow); ``column_spacing`` = PixelSpacing[1], ``row_spacing`` =
    PixelSpacing[0]; ``slice_step_lps`` the world step from one sorted slice to the next (mm).
    """
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(row_cosine, dtype=np.float64) * column_spacing
    affine[:3, 1] = np.asarray(column_cosine, dtype=np.float64) * row_spacing
    affine[:3, 2] = np.asarray(slice_step_lps, dtype=np.float64)
    affine[:3, 3] = np.asarray(origin_lps, dtype=np.float64)
    return affine


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Column norms of a 4x4 affine: the (x, y, z) voxel size in mm."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return float(norms[0]), float(norms[1]), float(norms[2])


@dataclass(frozen=True)
class SourceGeometry:
    """The voxel grid of the file a volume came from.

    ``shape``: the file's spatial array shape ``(i, j, k)``; ``affine``: its RAS affine (float64);
    ``to_display``: nibabel orientation transform (3x2) from the file grid to the display grid;
    ``header``: the NIfTI header (``None`` for DICOM); ``qform_code``/``sform_code``: what to write back.
    """

    kind: str
    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    to_display: np.ndarray
    header: nib.Nifti1Header | None = None
    qform_code: int = 1
    sform_code: int = 1

    def display_affine(self) -> np.ndarray:
        """RAS affine of the display grid (index (x, y, z, 1))."""
        return self.affine @ orientations.inv_ornt_aff(self.to_display, self.shape)

    def to_display_array(self, array_ijk: np.ndarray) -> np.ndarray:
        """File-grid array ``(i, j, k[, ...])`` -> display array ``(z, y, x[, ...])`` (contiguous)."""
        oriented = orientations.apply_orientation(array_ijk, self.to_display)
        order = (2, 1, 0) + tuple(range(3, oriented.ndim))
        return np.ascontiguousarray(oriented.transpose(order))

    def to_source_array(self, array_zyx: np.ndarray) -> np.ndarray:
        """Display array ``(z, y, x)`` -> file-grid array ``(i, j, k)`` (contiguous)."""
        array_xyz = np.asarray(array_zyx).transpose(2, 1, 0)
        back = inverse_transform(self.to_display)
        return np.ascontiguousarray(orientations.apply_orientation(array_xyz, back))


def display_transform(affine_ras: np.ndarray) -> np.ndarray:
    """nibabel orientation transform that brings a grid with ``affine_ras`` closest to L, P, S axes."""
    source = orientations.io_orientation(np.asarray(affine_ras, dtype=np.float64))
    return orientations.ornt_transform(source, orientations.axcodes2ornt(DISPLAY_AXCODES))


def inverse_transform(transform: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform that undoes ``transform``."""
    inverse = np.zeros_like(np.asarray(transform, dtype=np.float64))
    for source_axis, (target_axis, flip) in enumerate(transform):
        inverse[int(target_axis)] = (source_axis, flip)
    return inverse
