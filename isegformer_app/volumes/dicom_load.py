"""Load one DICOM series (classic or enhanced multi-frame) into a ``Volume``.

Slices are ordered by their position along the slice normal, ``ImagePositionPatient · (row × column
cosines)``, never by file name. Stored values are rescaled (RescaleSlope/Intercept, per frame), and
MONOCHROME1 images are inverted so that bright always means a high value. The affine is built in
DICOM LPS and kept (``Volume.affine``) in RAS, the convention nibabel uses for NIfTI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import FileMetaDataset

from .dicom_frames import DicomFrame, frame_pixels, frames_of
from .dicom_scan import DicomScan, SeriesInfo, scan_dicom_folder, skip_reason
from .errors import VolumeError
from .geometry import SourceGeometry, affine_from_dicom, display_transform, lps_to_ras
from .progress import CancelFlag, LoadMonitor, ProgressCallback
from .sanitize import replace_non_finite
from .slice_grid import POSITION_TOLERANCE_MM, SliceGrid, fill_missing_positions, plan_slice_grid
from .volume import Volume
from .windowing import WindowPreset, modality_presets

# a tilt-corrected grid may cover at most this many times a slice's area (30 degrees of tilt over a
# long series stay under about 2.7)
MAX_TILT_GRID_FACTOR = 4

DEFAULT_ORIENTATION = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def load_dicom(path: Path | str, series_uid: str | None = None, progress: ProgressCallback | None = None,
               cancel: CancelFlag | None = None) -> Volume:
    """Load a DICOM series from a folder (``series_uid`` picks one of several) or a single file."""
    path = Path(path)
    monitor = LoadMonitor(progress, cancel)
    if path.is_file():
        return load_dicom_files([path], progress=progress, cancel=cancel)
    scan = scan_dicom_folder(path, progress=monitor.sub(0.0, 0.2).progress_callback(), cancel=cancel)
    info = choose_series(scan, series_uid)
    volume = load_dicom_files(info.files, progress=monitor.sub(0.2, 1.0).progress_callback(), cancel=cancel)
    volume.warnings[:0] = scan.notes
    return volume


def choose_series(scan: DicomScan, series_uid: str | None) -> SeriesInfo:
    """The series ``series_uid`` of ``scan``, or its only series; a clear error otherwise."""
    if not scan.series:
        reasons = "; ".join(scan.notes[:5]) or "the folder is empty"
        raise VolumeError(f"no DICOM image series in {scan.folder} ({reasons})")
    if series_uid is not None:
        return scan.find(series_uid)
    if len(scan.series) > 1:
        raise VolumeError(f"{scan.folder} contains {len(scan.series)} image series; choose one: "
                          + "; ".join(f"{info.label()} [uid {info.uid}]" for info in scan.series))
    return scan.series[0]


@dataclass
class _ReadFiles:
    """Frames (with their stored pixels) of the readable files of a series."""

    frames: list[DicomFrame] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    first_dataset: pydicom.Dataset | None = None
    modalities: set[str] = field(default_factory=set)
    photometrics: set[str] = field(default_factory=set)


def _read_files(paths: list[Path], monitor: LoadMonitor, warnings: list[str]) -> _ReadFiles:
    """Read every file; a file that cannot be used is skipped with a warning saying why."""
    read = _ReadFiles()
    for position, path in enumerate(paths):
        monitor.report(0.9 * position / len(paths), f"reading {path.name}")
        try:
            dataset = pydicom.dcmread(path, force=True)
            _ensure_transfer_syntax(dataset)
            for _element in dataset:  # values convert on first access: a damaged one fails here, not later
                pass
        except Exception as exc:
            warnings.append(f"skipped {path.name}: unreadable DICOM ({type(exc).__name__}: {exc})")
            continue
        reason = skip_reason(dataset)
        if reason is not None:
            warnings.append(f"skipped {path.name}: {reason}")
            continue
        try:  # the pixels first: they refuse a NumberOfFrames the file cannot hold (1e9 frames to describe)
            stored = frame_pixels(dataset)
        except Exception as exc:  # truncated pixel data, unsupported compression, missing pixel data
            warnings.append(f"skipped {path.name}: cannot read its pixel data ({type(exc).__name__}: {exc})"
                            + _codec_hint(dataset))
            continue
        try:
            file_frames = frames_of(dataset, path)
        except Exception as exc:  # malformed geometry/rescale values
            warnings.append(f"skipped {path.name}: malformed header ({type(exc).__name__}: {exc})")
            continue
        if len(file_frames) != stored.shape[0]:
            warnings.append(f"skipped {path.name}: NumberOfFrames={len(file_frames)} but {stored.shape[0]} "
                            "frames of pixel data")
            continue
        if read.first_dataset is None:
            read.first_dataset = dataset
        read.modalities.add(str(dataset.get("Modality", "OT")) or "OT")
        read.photometrics.add(str(dataset.get("PhotometricInterpretation", "MONOCHROME2")))
        if int(dataset.get("SamplesPerPixel", 1) or 1) > 1 and not any("colour" in w for w in warnings):
            warnings.append("colour DICOM images were converted to grey (luminance)")
        read.frames.extend(file_frames)
        read.pixels.extend(stored)
    return read


def load_dicom_files(files: Sequence[Path | str], progress: ProgressCallback | None = None,
                     cancel: CancelFlag | None = None) -> Volume:
    """Load the given files (one series) into a ``Volume`` with ``warnings`` for every guess made."""
    monitor = LoadMonitor(progress, cancel)
    warnings: list[str] = []
    paths = [Path(p) for p in files]
    if not paths:
        raise VolumeError("no DICOM files to load")
    read = _read_files(paths, monitor, warnings)
    first_dataset, modalities, photometrics = read.first_dataset, read.modalities, read.photometrics
    if first_dataset is None:
        raise VolumeError("none of the DICOM files could be read: " + "; ".join(warnings[:5]))
    if len(modalities) > 1:
        raise VolumeError(f"the series mixes modalities {', '.join(sorted(modalities))}; "
                          "it cannot form one volume (choose files of one modality)")
    monitor.report(0.9, "sorting slices")
    frames, pixels = _keep_main_group(read.frames, read.pixels, warnings)
    row_spacing, column_spacing = _pixel_spacing(frames, warnings)
    orientation = frames[0].orientation
    if orientation is None:
        warnings.append("ImageOrientationPatient is missing: assuming axial slices (identity orientation)")
        orientation = DEFAULT_ORIENTATION
    row_cosine, column_cosine = _unit(orientation[:3]), _unit(orientation[3:])
    grid = _slice_grid(frames, np.cross(row_cosine, column_cosine), warnings)
    stack, origin = _build_stack(grid, frames, pixels, row_cosine, column_cosine, row_spacing, column_spacing)
    step_lps = grid.step
    replace_non_finite(stack, warnings)
    modality = modalities.pop()
    windows = _dicom_windows(frames[0])
    if "MONOCHROME1" in photometrics:
        low, high = float(stack.min()), float(stack.max())
        np.subtract(np.float32(low + high), stack, out=stack)
        windows = [WindowPreset(w.name, low + high - w.center, w.width) for w in windows]
        warnings.append("MONOCHROME1 image inverted (value = min + max - value) so bright means high")

    affine_lps = affine_from_dicom(origin, row_cosine, column_cosine, column_spacing, row_spacing, step_lps)
    # Rounded to float32 so the affine written to NIfTI (float32 fields) reads back identical.
    affine_ras = lps_to_ras(affine_lps).astype(np.float32).astype(np.float64)
    if not np.all(np.isfinite(affine_ras)) or np.linalg.det(affine_ras[:3, :3]) == 0:
        raise VolumeError("invalid geometry: PixelSpacing, the slice spacing, ImageOrientationPatient or "
                          "ImagePositionPatient give a singular or non-finite voxel grid "
                          f"(pixel spacing {row_spacing:g} x {column_spacing:g} mm, slice step "
                          f"{np.round(step_lps, 6).tolist()} mm)")  # fmt: skip
    source_shape = (stack.shape[2], stack.shape[1], stack.shape[0])
    source = SourceGeometry(kind="dicom", path=paths[0].parent, shape=source_shape, affine=affine_ras,
                            to_display=display_transform(affine_ras))
    monitor.report(0.95, "orienting")
    voxels = source.to_display_array(stack.transpose(2, 1, 0))
    presets = windows + modality_presets(modality, voxels)
    monitor.report(1.0, f"loaded {len(frames)} slices")
    return Volume(
        voxels=voxels,
        affine=source.display_affine(),
        source=source,
        modality=modality,
        window_presets=presets,
        warnings=warnings,
        description=str(first_dataset.get("SeriesDescription", "") or first_dataset.get("ProtocolName", "")),
        metadata={
            "series_uid": str(first_dataset.get("SeriesInstanceUID", "")),
            "study_uid": str(first_dataset.get("StudyInstanceUID", "")),
            "patient_id": str(first_dataset.get("PatientID", "")),
            "photometric": sorted(photometrics),
            "n_files": len({frame.path for frame in frames}),
            # per grid slice k: the file and frame it shows ("" / -1: blank or resampled)
            "slice_files": [str(frames[i].path) if i is not None else "" for i in map(grid.frame_of,
                                                                                    range(grid.n_slices))],
            "slice_frames": [frames[i].frame_index if i is not None else -1 for i in map(grid.frame_of,
                                                                                       range(grid.n_slices))],
        },
    )


def _ensure_transfer_syntax(dataset: pydicom.Dataset) -> None:
    """Files without a meta header (no TransferSyntaxUID) get the encoding they were parsed with."""
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = dataset.original_encoding
    if implicit is None or little is None:
        return
    syntax = (uid.ImplicitVRLittleEndian if implicit else uid.ExplicitVRLittleEndian) if little \
        else uid.ExplicitVRBigEndian
    if meta is None:
        dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax


def _codec_hint(dataset: pydicom.Dataset) -> str:
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if not isinstance(syntax, uid.UID) or not syntax.is_transfer_syntax or not syntax.is_compressed:
        return ""  # none, or not a transfer syntax at all (a damaged header)
    return (f" [compressed transfer syntax {syntax.name}: unless the file is damaged, decoding it needs "
            "an extra pydicom plugin such as pylibjpeg (+ pylibjpeg-libjpeg / pylibjpeg-openjpeg) "
            "or python-gdcm]")


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise VolumeError(f"invalid ImageOrientationPatient direction {vector.tolist()}")
    return np.asarray(vector, dtype=np.float64) / norm


def _keep_main_group(frames: list[DicomFrame], pixels: list[np.ndarray],
                     warnings: list[str]) -> tuple[list[DicomFrame], list[np.ndarray]]:
    """Keep the frames sharing the most common (size, orientation); warn about the rest."""
    def key(frame: DicomFrame, plane: np.ndarray) -> tuple:
        orientation = None if frame.orientation is None else tuple(np.round(frame.orientation, 3))
        return plane.shape, orientation

    keys = [key(f, p) for f, p in zip(frames, pixels, strict=True)]
    counts = Counter(keys)
    if len(counts) == 1:
        return frames, pixels
    main, _ = counts.most_common(1)[0]
    kept = [i for i, k in enumerate(keys) if k == main]
    sizes, orientations = len({k[0] for k in keys}), len({k[1] for k in keys})
    mixed = " and ".join(what for what, n in (("sizes", sizes), ("orientations", orientations)) if n > 1)
    warnings.append(f"the series mixes slices of {len(counts)} different {mixed} (e.g. a localizer); "
                    f"kept the {len(kept)} slices of size {main[0][1]}x{main[0][0]}, "
                    f"dropped {len(frames) - len(kept)}")
    return [frames[i] for i in kept], [pixels[i] for i in kept]


def _slice_grid(frames: list[DicomFrame], normal: np.ndarray, warnings: list[str]) -> SliceGrid:
    """Where each frame goes on the regular grid (see :mod:`.slice_grid`)."""
    if not fill_missing_positions(frames, normal, warnings):
        order = sorted(range(len(frames)), key=lambda i: (frames[i].instance_number, frames[i].frame_index))
        spacing = _fallback_spacing(frames[0], warnings, "ImagePositionPatient is missing")
        if len(frames) > 1:
            warnings.append("slices ordered by InstanceNumber/frame order because positions are missing")
        origin = next((frames[i].position for i in order if frames[i].position is not None), np.zeros(3))
        return SliceGrid([[(i, 1.0)] for i in order], origin, normal * spacing, spacing)
    distances = np.array([float(frame.position @ normal) for frame in frames])
    order = sorted(range(len(frames)), key=lambda i: (distances[i], frames[i].instance_number))
    unique = [order[0]]
    for index in order[1:]:
        if abs(distances[index] - distances[unique[-1]]) > POSITION_TOLERANCE_MM:
            unique.append(index)
    if len(unique) < len(order):
        warnings.append(f"{len(order) - len(unique)} slice(s) share a position with another slice (several "
                        "echoes/time points?); kept the first slice at each position")
        order = unique
    if len(order) == 1:
        spacing = _fallback_spacing(frames[order[0]], warnings, "only one slice")
        return SliceGrid([[(order[0], 1.0)]], frames[order[0]].position, normal * spacing, spacing)
    one_file = len({frames[i].path for i in order}) == 1
    file_order = [frames[i].frame_index for i in order]
    against_normal = one_file and all(a > b for a, b in zip(file_order, file_order[1:], strict=False))
    return plan_slice_grid(frames, order, normal, warnings, keep_file_order=against_normal)


def _build_stack(grid: SliceGrid, frames: list[DicomFrame], pixels: list[np.ndarray],
                 row_cosine: np.ndarray, column_cosine: np.ndarray, row_spacing: float,
                 column_spacing: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(slices, rows, columns)`` float32 rescaled values on ``grid`` and the LPS origin of its pixel
    (0, 0, 0); blank slices and the border uncovered by a tilt correction get the lowest value of the
    series. With a tilt correction the grid grows in-plane so that every written pixel of every frame
    stays in it (as dcm2niix does): its origin then moves by the rows/columns added before row/column 0."""
    used = sorted({i for source in grid.sources for i, _ in source})

    def rescaled(i: int) -> np.ndarray:
        plane = np.multiply(pixels[i], np.float32(frames[i].slope), dtype=np.float32)
        if frames[i].intercept:
            plane += np.float32(frames[i].intercept)
        return plane

    def extremes(i: int) -> tuple[float, float]:  # of the rescaled frame, without making it
        ends = (float(np.min(pixels[i])) * frames[i].slope, float(np.max(pixels[i])) * frames[i].slope)
        return min(ends) + frames[i].intercept, max(ends) + frames[i].intercept

    def shift(k: int, i: int) -> tuple[float, float]:  # frame i's pixels -> slice k, in (columns, rows)
        offset = grid.slice_origin(k) - frames[i].position
        return float(offset @ row_cosine) / column_spacing, float(offset @ column_cosine) / row_spacing

    lows = np.array([extremes(i)[0] for i in used])
    background = float(lows[np.isfinite(lows)].min()) if np.isfinite(lows).any() else 0.0
    rows, columns = pixels[used[0]].shape
    x0 = y0 = 0
    if grid.resample_in_plane:  # grow the grid to hold every frame's footprint
        shifts = np.array([shift(k, i) for k, source in enumerate(grid.sources) for i, _ in source])
        if not np.all(np.isfinite(shifts)):
            raise VolumeError("the slices are shifted in-plane against each other beyond any gantry tilt: "
                              "they are not one stack (choose the files of one stack)")
        (low_x, low_y), (high_x, high_y) = shifts.min(axis=0), shifts.max(axis=0)
        x0, y0 = min(0, int(np.floor(-high_x + 1e-6))), min(0, int(np.floor(-high_y + 1e-6)))
        x1, y1 = int(np.ceil(columns - 1 - low_x - 1e-6)), int(np.ceil(rows - 1 - low_y - 1e-6))
        frame_columns, frame_rows = columns, rows
        columns, rows = max(columns - 1, x1) - x0 + 1, max(rows - 1, y1) - y0 + 1
        if columns * rows > MAX_TILT_GRID_FACTOR * frame_columns * frame_rows:  # else a grid of any size
            raise VolumeError(f"the slices are shifted in-plane against each other far beyond a gantry tilt "
                              f"(the corrected grid would be {columns}x{rows} pixels for {frame_columns}x"
                              f"{frame_rows} slices): they are not one stack (choose the files of one stack)")
    stack = np.full((grid.n_slices, rows, columns), background, dtype=np.float32)
    for k, source in enumerate(grid.sources):
        if not source:
            continue
        planes = []
        for i, weight in source:
            plane = rescaled(i)
            if grid.resample_in_plane:  # move frame i's pixels onto slice k of the orthogonal grid
                dx, dy = shift(k, i)
                matrix = np.array([[1.0, 0.0, dx + x0], [0.0, 1.0, dy + y0]])  # grid pixel -> frame pixel
                plane = cv2.warpAffine(plane, matrix, (columns, rows),
                                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=background)  # fmt: skip
            planes.append(plane if weight == 1.0 else plane * np.float32(weight))
        stack[k] = planes[0] if len(planes) == 1 else np.sum(planes, axis=0)
    origin = grid.origin + x0 * column_spacing * row_cosine + y0 * row_spacing * column_cosine
    return stack, origin


def _fallback_spacing(frame: DicomFrame, warnings: list[str], why: str) -> float:
    for value, name in ((frame.spacing_between_slices, "SpacingBetweenSlices"),
                        (frame.slice_thickness, "SliceThickness")):
        if value is not None and value > 0:
            warnings.append(f"{why}: slice spacing taken from {name} ({value:g} mm)")
            return float(value)
    warnings.append(f"{why} and no slice thickness: assuming 1 mm slice spacing")
    return 1.0


def _pixel_spacing(frames: list[DicomFrame], warnings: list[str]) -> tuple[float, float]:
    spacings = [frame.pixel_spacing for frame in frames if frame.pixel_spacing is not None]
    if not spacings:
        warnings.append("PixelSpacing is missing: assuming 1 mm pixels")
        return 1.0, 1.0
    if len(spacings) < len(frames) or len(set(spacings)) > 1:
        warnings.append("pixel spacing differs between slices: using the first slice's")
    if frames[0].pixel_spacing_source != "PixelSpacing":
        warnings.append(f"PixelSpacing is missing: using {frames[0].pixel_spacing_source} (detector plane)")
    return spacings[0]


def _dicom_windows(frame: DicomFrame) -> list[WindowPreset]:
    """WindowCenter/Width of the file (already in rescaled units) as presets."""
    presets = []
    for center, width, name in frame.windows:
        label = f"DICOM {name}" if not name[:1].isdigit() else f"DICOM window {name}"
        presets.append(WindowPreset(label, center, width))
    return presets
