"""Export and re-import of a volume annotation (Qt-free, safe to run in a worker thread on a label copy).

* NIfTI label map on the source image's grid and geometry (``volumes.save_label_nifti``), plus an
  ITK-SNAP label description ``<stem>_itksnap.txt`` and a 3D Slicer colour table ``<stem>.ctbl`` beside it;
* per-slice PNG pairs in the BraTS or OAI-ZIB layout (``volumes.export_slices_png``);
* a label map imported back (``volumes.load_label_nifti``) takes its names, colours and visibility from
  the ITK-SNAP file beside it, when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isegformer_app.volumes import (
    CancelFlag,
    ExportedSlice,
    LabelVolume,
    Volume,
    VolumeError,
    export_slices_png,
    load_label_nifti,
    read_itksnap_labels,
    save_label_nifti,
    write_itksnap_labels,
    write_slicer_color_table,
)
from isegformer_app.volumes.label_tables import table_paths
from isegformer_app.volumes.progress import ProgressCallback


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


@dataclass
class ImportedLabels:
    """A label map read onto a volume: ``labels`` (named from ``table`` where it was read), the ITK-SNAP
    ``table`` used (None: none beside the map) and why a table beside it could not be used."""

    labels: LabelVolume
    table: Path | None = None
    table_error: str | None = None

    def summary(self) -> str:
        """One sentence on where the names and colours came from."""
        if self.table is not None:
            return f"Names and colours from {self.table.name}."
        if self.table_error is not None:
            return f"Default names and colours: {self.table_error}"
        return "Default names and colours (no label description file beside it)."


def import_volume_labels(path: Path | str, volume: Volume) -> ImportedLabels:
    """Read a NIfTI label map onto ``volume`` (``VolumeError`` if it belongs to another grid) with the
    names, colours and visibility of the ITK-SNAP file that export wrote beside it."""
    path = Path(path)
    labels = load_label_nifti(path, volume)
    table_path, _ = table_paths(path)
    if not table_path.is_file():
        return ImportedLabels(labels)
    try:
        table = read_itksnap_labels(table_path)
    except (OSError, VolumeError) as error:
        return ImportedLabels(labels, table_error=f"{table_path.name} could not be read ({error}).")
    for value in labels.labels.keys() & table.keys():  # the values present, named when the map was read
        labels.labels[value] = table[value]
    return ImportedLabels(labels, table_path)
