"""Per-frame geometry and rescale values of classic (one slice per file) and enhanced multi-frame DICOM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut


@dataclass
class DicomFrame:
    """One 2-D slice: where it is (LPS mm), how it is scaled, and where its pixels come from."""

    path: Path
    frame_index: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    pixel_spacing_source: str
    slice_thickness: float | None
    spacing_between_slices: float | None
    slope: float
    intercept: float
    instance_number: int
    windows: list[tuple[float, float, str]] = field(default_factory=list)


def _floats(value: object, count: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return array if array.size == count and np.all(np.isfinite(array)) else None


def _float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _as_list(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)  # type: ignore[call-overload]


def _windows(item: Dataset) -> list[tuple[float, float, str]]:
    centers = [_float(v) for v in _as_list(item.get("WindowCenter"))]
    widths = [_float(v) for v in _as_list(item.get("WindowWidth"))]
    names = [str(v) for v in _as_list(item.get("WindowCenterWidthExplanation"))]
    result = []
    for position, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if center is not None and width is not None and width > 0:
            name = names[position] if position < len(names) else f"{position + 1}"
            result.append((center, width, name))
    return result


def _group_item(dataset: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The first item of functional group ``sequence`` for ``frame`` (per-frame first, then shared)."""
    for groups_name, index in (("PerFrameFunctionalGroupsSequence", frame),
                               ("SharedFunctionalGroupsSequence", 0)):
        groups = dataset.get(groups_name)
        if groups is None or len(groups) <= index:
            continue
        inner = groups[index].get(sequence)
        if inner is not None and len(inner) > 0:
            return inner[0]
    return None


def frames_of(dataset: Dataset, path: Path) -> list[DicomFrame]:
    """The frames of one DICOM instance; functional-group values take precedence over top-level ones."""
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    instance = dataset.get("InstanceNumber")
    instance_number = int(instance) if instance not in (None, "") else 0
    frames = []
    for frame in range(count):
        plane_position = _group_item(dataset, frame, "PlanePositionSequence")
        plane_orientation = _group_item(dataset, frame, "PlaneOrientationSequence")
        measures = _group_item(dataset, frame, "PixelMeasuresSequence")
        transform = _group_item(dataset, frame, "PixelValueTransformationSequence")
        voi = _group_item(dataset, frame, "FrameVOILUTSequence")
        position_item = plane_position if plane_position is not None else dataset
        orientation_item = plane_orientation if plane_orientation is not None else dataset
        measure_item = measures if measures is not None and "PixelSpacing" in measures else dataset
        spacing = _floats(measure_item.get("PixelSpacing"), 2)
        valid_spacing = spacing is not None and bool(np.all(spacing > 0))
        spacing_source = "PixelSpacing"
        if spacing is None:
            spacing = _floats(dataset.get("ImagerPixelSpacing"), 2)
            spacing_source = "ImagerPixelSpacing"
            valid_spacing = spacing is not None and bool(np.all(spacing > 0))
        thickness_item = measures if measures is not None else dataset
        transform_item = transform if transform is not None else dataset
        slope = _float(transform_item.get("RescaleSlope"))
        intercept = _float(transform_item.get("RescaleIntercept"))
        frames.append(DicomFrame(
            path=path,
            frame_index=frame,
            position=_floats(position_item.get("ImagePositionPatient"), 3),
            orientation=_floats(orientation_item.get("ImageOrientationPatient"), 6),
            pixel_spacing=(float(spacing[0]), float(spacing[1])) if valid_spacing else None,
            pixel_spacing_source=spacing_source,
            slice_thickness=_float(thickness_item.get("SliceThickness", dataset.get("SliceThickness"))),
            spacing_between_slices=_float(thickness_item.get("SpacingBetweenSlices",
                                                             dataset.get("SpacingBetweenSlices"))),
            slope=1.0 if slope in (None, 0.0) else slope,
            intercept=0.0 if intercept is None else intercept,
            instance_number=instance_number,
            windows=_windows(voi if voi is not None else dataset),
        ))
    _apply_grid_frame_offsets(dataset, frames)
    if str(dataset.get("Modality", "")).upper() == "RTDOSE" and "RescaleSlope" not in dataset:
        scaling = _float(dataset.get("DoseGridScaling"))
        for frame_info in frames:
            frame_info.slope = scaling if scaling else 1.0
    return frames


def _apply_grid_frame_offsets(dataset: Dataset, frames: list[DicomFrame]) -> None:
    """Multi-frame files with one ImagePositionPatient and a GridFrameOffsetVector (RT dose, some NM):
    frame k lies ``offset[k] - offset[0]`` mm from that position along the slice normal."""
    offsets = [_float(v) for v in _as_list(dataset.get("GridFrameOffsetVector"))]
    if len(frames) < 2 or len(offsets) != len(frames) or any(v is None for v in offsets):
        return
    if "PerFrameFunctionalGroupsSequence" in dataset or frames[0].position is None:
        return
    orientation = frames[0].orientation
    if orientation is None:
        return
    normal = np.cross(orientation[:3], orientation[3:])
    for frame_info, offset in zip(frames, offsets, strict=True):
        frame_info.position = frame_info.position + (offset - offsets[0]) * normal  # type: ignore[operator]


def frame_pixels(dataset: Dataset) -> np.ndarray:
    """Stored pixel values of every frame: ``(frames, rows, columns)``.

    Colour images (RGB as pydicom returns them, or palette colour after its lookup table) are converted
    to luminance 0.299 R + 0.587 G + 0.114 B.
    """
    pixels = dataset.pixel_array
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if str(dataset.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
        samples = 3
    if samples > 1:
        if pixels.ndim == 3:  # one frame, whatever NumberOfFrames says (0 or empty gives several)
            pixels = pixels[None]
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return pixels[..., :3].astype(np.float32) @ weights
    return pixels[None] if pixels.ndim == 2 else pixels
