"""Write label volumes as NIfTI on the source image's grid, with the source affine and qform/sform codes.

The file opens as an overlay of the source image in ITK-SNAP and 3D Slicer. For DICOM sources the
grid is the slice stack (i = column, j = row, k = sorted slice) with the RAS affine, codes 1 (scanner).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from model.atomic_io import atomic_write_with

from .errors import VolumeError
from .labels import LabelVolume, dtype_for
from .nifti_load import is_nifti, load_label_image
from .volume import Volume

NIFTI_INTENT_LABEL = 1002


def label_nifti_image(labels: LabelVolume, volume: Volume) -> nib.Nifti1Image:
    """The NIfTI-1 image of ``labels`` in ``volume``'s source grid and geometry."""
    if labels.shape != volume.shape:
        raise VolumeError(f"label volume shape {labels.shape} does not match the image {volume.shape}")
    source = volume.source
    peak = int(labels.data.max()) if labels.data.size else 0
    data = source.to_source_array(labels.data).astype(dtype_for(peak), copy=False)
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    image = nib.Nifti1Image(data, None, header)
    if source.header is not None:
        qform, qcode = source.header.get_qform(coded=True)
        sform, scode = source.header.get_sform(coded=True)
        image.header.set_xyzt_units(*source.header.get_xyzt_units())
        base = source.affine
        image.set_qform(qform if qform is not None else base, code=int(qcode or 0))
        image.set_sform(sform if sform is not None else base, code=int(scode or 0))
        if qform is None and sform is None:  # Analyze-style file: only the voxel sizes matter
            image.header.set_zooms(source.header.get_zooms()[:3])
    else:
        image.header.set_xyzt_units("mm")
        image.set_qform(source.affine, code=source.qform_code)
        image.set_sform(source.affine, code=source.sform_code)
    image.header.set_intent(NIFTI_INTENT_LABEL)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["descrip"] = b"isegformer label map"
    return image


def save_label_nifti(labels: LabelVolume, volume: Volume, path: Path | str) -> Path:
    """Write ``labels`` to ``path`` (.nii or .nii.gz) atomically; returns the path."""
    path = Path(path)
    if not is_nifti(path):
        raise VolumeError(f"label maps are written as .nii or .nii.gz, not {path.name}")
    image = label_nifti_image(labels, volume)
    atomic_write_with(path, lambda tmp: nib.save(image, tmp))
    return path


def load_label_nifti(path: Path | str, volume: Volume) -> LabelVolume:
    """Re-import a NIfTI label map onto ``volume``; ``VolumeError`` if its shape or affine differ."""
    return load_label_image(path, volume)
