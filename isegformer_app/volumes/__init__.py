"""Medical volumes (Qt-free): DICOM series and NIfTI loading, slice views, label maps and their export.

Volumes are display-oriented ``(z, y, x)`` float32 arrays with a RAS affine (see ``geometry``);
``Volume.slice_image`` gives the documented model input (windowed, 0..255, replicated to RGB).
"""

from .dicom_load import choose_series, load_dicom, load_dicom_files
from .dicom_scan import DicomScan, SeriesInfo, SkippedFile, scan_dicom_folder
from .errors import LoadCancelled, VolumeError
from .geometry import SourceGeometry
from .label_export import label_nifti_image, load_label_nifti, save_label_nifti
from .label_tables import (
    itksnap_label_text,
    read_itksnap_labels,
    slicer_color_table_text,
    write_itksnap_labels,
    write_slicer_color_table,
)
from .labels import LabelInfo, LabelVolume, default_label_info
from .nifti_load import BratsCase, find_brats_files, load_brats_case, load_nifti, nifti_frame_count
from .open_volume import open_volume
from .progress import CancelFlag, LoadMonitor, ProgressCallback
from .slice_export import ExportedSlice, export_slices_png, layout_dirs
from .slicing import AXES, extract_slice, insert_slice, pixel_aspect, view_shape
from .volume import ModelInput, Volume
from .windowing import WindowPreset, apply_window

__all__ = [
    "AXES", "BratsCase", "CancelFlag", "DicomScan", "ExportedSlice", "LabelInfo", "LabelVolume",
    "LoadCancelled", "LoadMonitor", "ModelInput", "ProgressCallback", "SeriesInfo", "SkippedFile",
    "SourceGeometry", "Volume", "VolumeError", "WindowPreset", "apply_window", "choose_series",
    "default_label_info", "export_slices_png", "extract_slice", "find_brats_files", "insert_slice",
    "itksnap_label_text", "label_nifti_image", "layout_dirs", "load_brats_case", "load_dicom",
    "load_dicom_files", "load_label_nifti", "load_nifti", "nifti_frame_count", "open_volume", "pixel_aspect",
    "read_itksnap_labels", "save_label_nifti", "scan_dicom_folder", "slicer_color_table_text", "view_shape",
    "write_itksnap_labels", "write_slicer_color_table",
]
