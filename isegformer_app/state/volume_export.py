"""Export of a volume annotation (Qt-free, safe to run in a worker thread on a label copy).

* NIfTI label map on the source image's grid and geometry (``volumes.save_label_nifti``), plus an
  ITK-SNAP label description ``<stem>_itksnap.txt`` and a 3D Slicer colour table ``<stem>.ctbl`` beside it;
* per-slice PNG pairs in the BraTS or OAI-ZIB layout (``volumes.export_slices_png``).
"""

from __future__ import annotations

from pathlib import Path

from isegformer_app.volumes import (
    CancelFlag,
    ExportedSlice,
    LabelVolume,
    Volume,
    VolumeError,
    export_slices_png,
    save_label_nifti,
    write_itksnap_labels,
    write_slicer_color_table,
)
from isegformer_app.volumes.progress import ProgressCallback


def nifti_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def table_paths(nifti_path: Path) -> tuple[Path, Path]:
    """(ITK-SNAP label file, Slicer colour table) written next to ``nifti_path``."""
    nifti_path = Path(nifti_path)
    stem = nifti_stem(nifti_path)
    return nifti_path.with_name(f"{stem}_itksnap.txt"), nifti_path.with_name(f"{stem}.ctbl")


def export_volume_labels(labels: LabelVolume, volume: Volume, path: Path | str,
                         progress: ProgressCallback | None = None) -> list[Path]:  # fmt: skip
    """Write the label map (``.nii``/``.nii.gz``) and its two label tables; returns the three paths."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        path = path.with_name(path.name + ".nii.gz")
    itk, slicer = table_paths(path)
    if progress is not None:
        progress(0.05, f"writing {path.name}")
    save_label_nifti(labels, volume, path)
    if progress is not None:
        progress(0.9, "writing label tables")
    write_itksnap_labels(labels, itk)
    write_slicer_color_table(labels, slicer)
    if progress is not None:
        progress(1.0, "done")
    return [path, itk, slicer]


def export_volume_slices(labels: LabelVolume, volume: Volume, root: Path | str, case: str, layout: str,
                         axis: str = "axial", progress: ProgressCallback | None = None,
                         cancel: CancelFlag | None = None) -> list[ExportedSlice]:  # fmt: skip
    """PNG image/mask pairs of the labelled slices along ``axis``; ``cancel`` set stops early."""
    if not labels.present_values():
        raise VolumeError("Nothing to export: the label volume is empty.")
    return export_slices_png(volume, labels, root, case, layout=layout, axis=axis, progress=progress,
                             cancel=cancel)  # fmt: skip
