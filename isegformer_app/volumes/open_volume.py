"""One entry point for the app's "Open volume": a DICOM folder/file, a NIfTI file or a BraTS case folder."""

from __future__ import annotations

from pathlib import Path

from .dicom_load import load_dicom
from .errors import VolumeError
from .nifti_load import is_nifti, load_brats_case, load_nifti
from .progress import CancelFlag, ProgressCallback
from .volume import Volume


def open_volume(path: Path | str, series_uid: str | None = None, frame: int | None = None,
                progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> Volume:
    """Open ``path`` as a ``Volume``.

    * ``.nii``/``.nii.gz`` file: ``load_nifti`` (``frame`` picks a frame of a 4-D file);
    * folder holding NIfTI files named like BraTS (``*_t1``, ``*_flair``, ...): ``load_brats_case``
      (its segmentation path, if any, is ``volume.metadata["files"]["seg"]``);
    * any other folder or file: DICOM (``series_uid`` picks one of several series, see ``scan_dicom_folder``).
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path} does not exist")
    if path.is_file() and is_nifti(path):
        return load_nifti(path, frame=frame, progress=progress, cancel=cancel)
    if path.is_dir() and any(is_nifti(child) for child in path.iterdir()):
        return load_brats_case(path, progress=progress, cancel=cancel).volume
    return load_dicom(path, series_uid=series_uid, progress=progress, cancel=cancel)
