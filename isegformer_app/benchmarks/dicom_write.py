"""Write a volume as a classic single-frame DICOM series (test fixtures and the open-time benchmark).

Not a general DICOM exporter: it writes uncompressed MR/CT Image Storage files with the geometry
of a RAS affine, optionally with shuffled file names, rescale values and MONOCHROME1.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from isegformer_app.volumes.geometry import LPS_TO_RAS
from model.atomic_io import atomic_write_bytes


@dataclass
class SeriesOptions:
    modality: str = "MR"
    slope: float = 1.0
    intercept: float = 0.0
    photometric: str = "MONOCHROME2"
    shuffle_names: bool = True
    seed: int = 0
    series_description: str = "synthetic series"
    series_uid: str | None = None
    window: tuple[float, float] | None = None
    series_time: str | None = None  # SeriesTime, "HHMMSS"
    name_prefix: str = "IM"  # file names <prefix>00000.dcm ... (several series in one folder)


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) of ``value``."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def write_dicom_series(stored_ijk: np.ndarray, affine_ras: np.ndarray, folder: Path | str,
                       options: SeriesOptions | None = None) -> list[Path]:
    """Write ``stored_ijk`` (int16/uint16 ``(columns, rows, slices)``) as one file per k-slice.

    Pixel (row r, column c) of slice k is ``stored_ijk[c, r, k]``; its LPS position is the LPS affine
    times ``(c, r, k, 1)``. Returns the written paths in slice order k = 0, 1, ...
    """
    options = options or SeriesOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if stored_ijk.dtype not in (np.int16, np.uint16):
        raise ValueError(f"stored values must be int16 or uint16, got {stored_ijk.dtype}")
    affine_lps = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)
    column_step, row_step = affine_lps[:3, 0], affine_lps[:3, 1]
    column_spacing, row_spacing = float(np.linalg.norm(column_step)), float(np.linalg.norm(row_step))
    orientation = [*(column_step / column_spacing), *(row_step / row_spacing)]
    columns, rows, count = stored_ijk.shape
    names = [f"{options.name_prefix}{k:05d}.dcm" for k in range(count)]
    if options.shuffle_names:
        random.Random(options.seed).shuffle(names)
    study_uid, series_uid, frame_uid = generate_uid(), options.series_uid or generate_uid(), generate_uid()
    sop_class = CTImageStorage if options.modality == "CT" else MRImageStorage
    paths = []
    for k in range(count):
        position = affine_lps @ np.array([0.0, 0.0, k, 1.0])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = options.modality, "SYNTH", "Synthetic^Volume"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = options.series_description, 1, k + 1
        if options.series_time is not None:
            ds.SeriesTime = options.series_time
        ds.ImagePositionPatient = [_ds(v) for v in position[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.PixelSpacing = [_ds(row_spacing), _ds(column_spacing)]
        ds.SliceThickness = _ds(float(np.linalg.norm(affine_lps[:3, 2])))
        ds.RescaleSlope, ds.RescaleIntercept = _ds(options.slope), _ds(options.intercept)
        if options.window is not None:
            ds.WindowCenter, ds.WindowWidth = _ds(options.window[0]), _ds(options.window[1])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, options.photometric
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if stored_ijk.dtype == np.int16 else 0
        ds.PixelData = np.ascontiguousarray(stored_ijk[:, :, k].T).astype(stored_ijk.dtype.newbyteorder("<")
                                                                         ).tobytes()
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        path = folder / names[k]
        atomic_write_bytes(path, buffer.getvalue(), fsync=False)
        paths.append(path)
    return paths
