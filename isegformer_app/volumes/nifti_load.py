"""Load NIfTI volumes (.nii/.nii.gz, 3-D or one frame of 4-D) and multi-file BraTS cases."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import VolumeError
from .geometry import SourceGeometry, display_transform
from .labels import LabelInfo, LabelVolume, default_label_info, dtype_for
from .progress import CancelFlag, LoadMonitor, ProgressCallback
from .sanitize import replace_non_finite
from .volume import ModelInput, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
# File-name tokens of BraTS 2018-2021 (t1, t1ce, t2, flair, seg) and BraTS 2023 (t1n, t1c, t2w, t2f, seg).
BRATS_TOKENS = {"t1": "t1", "t1n": "t1", "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t2": "t2",
                "t2w": "t2", "flair": "flair", "t2f": "flair", "seg": "seg"}
BRATS_LABEL_NAMES = {1: "necrotic / non-enhancing tumour core", 2: "peritumoral edema",
                     3: "enhancing tumour (BraTS 2023)", 4: "enhancing tumour"}


MAX_VOXELS = 1024**3  # 4 GiB as float32, before the display copy; larger volumes are refused clearly


def is_nifti(path: Path | str) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _open(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise VolumeError(f"{path} does not exist")
    if not is_nifti(path):
        raise VolumeError(f"{path.name} is not a NIfTI file (.nii or .nii.gz)")
    try:
        image = nib.load(path)
    except Exception as exc:
        raise VolumeError(f"cannot read NIfTI file {path.name}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise VolumeError(f"{path.name} is not a NIfTI image")
    _check_declared_size(image, path)
    return image


def _check_declared_size(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse, before reading, a header that declares more voxels than we load, or (uncompressed) more
    bytes than the file holds."""
    shape = tuple(int(s) for s in image.shape)
    if any(size <= 0 for size in shape):
        raise VolumeError(f"{path.name} declares an image of shape {shape}: an axis without voxels")
    voxels = int(np.prod(shape[:3], dtype=np.int64)) if shape else 0
    if voxels > MAX_VOXELS:
        size = " x ".join(str(s) for s in shape[:3])
        raise VolumeError(f"{path.name} declares {size} voxels ({voxels * 4 / 2**30:.0f} GiB as float32); "
                          f"volumes above {MAX_VOXELS:,} voxels are not supported")  # fmt: skip
    if not str(path).lower().endswith(".gz"):
        offset = int(image.dataobj.offset)  # what is read (the header copy may have reset a bad vox_offset)
        needed = offset + int(np.prod(shape, dtype=np.int64)) * image.get_data_dtype().itemsize
        if path.stat().st_size < needed:
            raise VolumeError(f"{path.name} is truncated: its header declares {needed:,} bytes of image, "
                              f"the file has {path.stat().st_size:,}")  # fmt: skip


def _read_voxels(read, name: str) -> np.ndarray:
    """``read()`` (the proxy access that decompresses and converts) with its failures in the user's words."""
    try:
        return read()
    except (EOFError, zlib.error) as exc:
        raise VolumeError(f"{name} is damaged or truncated: the compressed data ends early or is corrupt "
                          f"({exc})") from exc  # fmt: skip
    except MemoryError as exc:
        raise VolumeError(f"{name}: not enough memory to load this volume") from exc
    except (OSError, ValueError) as exc:
        raise VolumeError(f"{name}: cannot read the voxel data ({type(exc).__name__}: {exc})") from exc


def nifti_frame_count(path: Path | str) -> int:
    """Number of frames (4th dimension) of a NIfTI file; 1 for 3-D files."""
    return _frame_count(_open(Path(path)))


def _spatial_data(image: nib.Nifti1Image, name: str, frame: int | None, warnings: list[str]) -> np.ndarray:
    shape = tuple(int(s) for s in image.shape)
    if np.issubdtype(image.get_data_dtype(), np.complexfloating) or image.get_data_dtype().names:
        raise VolumeError(f"{name}: {image.get_data_dtype()} voxels (complex/RGB) are not supported")
    extra = shape[4:]
    if any(size != 1 for size in extra):
        raise VolumeError(f"{name}: {len(shape)}-D image of shape {shape} is not a volume")
    if len(shape) < 2:
        raise VolumeError(f"{name}: {len(shape)}-D image of shape {shape} is not a volume")
    proxy = image.dataobj
    if len(shape) == 2:
        warnings.append(f"{name}: a 2-D image, loaded as a single slice")
        return _read_voxels(lambda: np.asarray(proxy[:, :], dtype=np.float32), name)[:, :, None]
    if len(shape) == 3:
        return _read_voxels(lambda: np.asarray(proxy[:, :, :], dtype=np.float32), name)
    else:
        frames = shape[3]
        if frames == 1:
            warnings.append(f"{name}: 4-D file with a single frame, treated as 3-D")
            chosen = 0
        elif frame is None:
            warnings.append(f"{name}: 4-D file with {frames} frames; showing frame 0")
            chosen = 0
        else:
            chosen = frame
        if not 0 <= chosen < frames:
            raise VolumeError(f"{name}: frame {chosen} is out of range 0..{frames - 1}")
        index = (slice(None),) * 3 + (chosen,) + (0,) * len(extra)
    # np.array: a float32 frame comes back as a read-only view of the file's bytes (NaN replaced in place)
    return _read_voxels(lambda: np.array(proxy[index], dtype=np.float32), name)


def _geometry(image: nib.Nifti1Image, path: Path, shape: tuple[int, int, int]) -> SourceGeometry:
    header = image.header
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{path.name}: invalid (singular or non-finite) affine")
    return SourceGeometry(kind="nifti", path=path, shape=shape, affine=affine,
                          to_display=display_transform(affine), header=header.copy(),
                          qform_code=int(header["qform_code"]), sform_code=int(header["sform_code"]))


def _guess_modality(values: np.ndarray) -> str:
    """'CT' when intensities look like Hounsfield units (air near -1000), else 'MR'."""
    return "CT" if values.size and float(values.min()) <= -900.0 else "MR"


def load_nifti(path: Path | str, frame: int | None = None, modality: str | None = None,
               progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> Volume:
    """Load a NIfTI file as a single-channel ``Volume`` (``frame`` picks one frame of a 4-D file)."""
    path = Path(path)
    monitor = LoadMonitor(progress, cancel)
    monitor.report(0.0, f"reading {path.name}")
    image = _open(path)
    warnings: list[str] = []
    data = _spatial_data(image, path.name, frame, warnings)
    monitor.report(0.7, "orienting")
    replace_non_finite(data, warnings)
    source = _geometry(image, path, data.shape)
    voxels = source.to_display_array(data)
    monitor.report(1.0, f"loaded {path.name}")
    return Volume(voxels=voxels, affine=source.display_affine(), source=source,
                  modality=modality or _guess_modality(voxels), channel_names=(_channel_name(path),),
                  warnings=warnings, description=path.name,
                  metadata={"frame": frame or 0, "frames": _frame_count(image)})  # fmt: skip


def _frame_count(image: nib.Nifti1Image) -> int:
    return int(image.shape[3]) if len(image.shape) >= 4 else 1


def _channel_name(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES[::-1]:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def brats_token(path: Path) -> str | None:
    """The BraTS modality ('t1', 't1ce', 't2', 'flair') or 'seg' a file name ends with, else ``None``."""
    token = re.split(r"[_\-.]", _channel_name(path).lower())[-1]
    return BRATS_TOKENS.get(token)


def find_brats_files(folder: Path | str) -> dict[str, Path]:
    """Map 't1'/'t1ce'/'t2'/'flair'/'seg' to the files of one BraTS case folder."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        token = brats_token(path) if is_nifti(path) else None
        if token is None:
            continue
        if token in found:
            raise VolumeError(f"{folder}: two files for {token}: {found[token].name} and {path.name}")
        found[token] = path
    if not any(token in found for token in BRATS_MODALITIES):
        raise VolumeError(f"{folder}: no BraTS modality files (*_t1, *_t1ce, *_t2, *_flair .nii.gz)")
    return found


@dataclass
class BratsCase:
    """A BraTS case: the modalities as channels of one ``Volume`` and the optional segmentation."""

    volume: Volume
    labels: LabelVolume | None
    files: dict[str, Path]


def load_brats_case(source: Path | str | Mapping[str, Path | str], progress: ProgressCallback | None = None,
                    cancel: CancelFlag | None = None) -> BratsCase:
    """Open t1, t1ce, t2, flair (any present, in that channel order) and seg of one case together.

    All files must share shape and affine. The default model input is FLAIR (or the first channel).
    """
    files = find_brats_files(source) if isinstance(source, str | Path) else {
        key: Path(value) for key, value in source.items()}
    unknown = set(files) - set(BRATS_MODALITIES) - {"seg"}
    if unknown:
        raise VolumeError(f"unknown BraTS keys {sorted(unknown)}; use {BRATS_MODALITIES} and 'seg'")
    monitor = LoadMonitor(progress, cancel)
    names = [name for name in BRATS_MODALITIES if name in files]
    if not names:
        raise VolumeError("a BraTS case needs at least one of t1, t1ce, t2, flair")
    warnings: list[str] = []
    channels: list[np.ndarray] = []
    reference: SourceGeometry | None = None
    for position, name in enumerate(names):
        monitor.report(position / (len(names) + 1), f"reading {files[name].name}")
        image = _open(files[name])
        data = _spatial_data(image, files[name].name, None, warnings)
        replace_non_finite(data, warnings)
        geometry = _geometry(image, files[name], data.shape)
        if reference is None:
            reference = geometry
        else:
            _check_same_grid(reference, geometry)
        channels.append(reference.to_display_array(data))
    assert reference is not None
    voxels = np.stack(channels)
    model_input = ModelInput.single("flair" if "flair" in names else names[0])
    volume = Volume(voxels=voxels, affine=reference.display_affine(), source=reference, modality="MR",
                    channel_names=tuple(names), warnings=warnings, model_input=model_input,
                    description=_case_name(files[names[0]]),
                    metadata={"files": {key: str(value) for key, value in files.items()}})
    labels = None
    if "seg" in files:
        monitor.report(len(names) / (len(names) + 1), f"reading {files['seg'].name}")
        labels = load_label_image(files["seg"], volume)
        for value in labels.present_values():
            if value in BRATS_LABEL_NAMES:
                color = default_label_info(value).color
                labels.labels[value] = LabelInfo(value, BRATS_LABEL_NAMES[value], color)
    monitor.report(1.0, "loaded BraTS case")
    return BratsCase(volume, labels, files)


def _case_name(path: Path) -> str:
    stem = _channel_name(path)
    return re.sub(r"[_\-](t1|t1n|t1ce|t1c|t2|t2w|flair|t2f|seg)$", "", stem, flags=re.IGNORECASE)


def _check_same_grid(reference: SourceGeometry, other: SourceGeometry) -> None:
    if other.shape != reference.shape:
        raise VolumeError(f"{other.path.name} has shape {other.shape} but {reference.path.name} has "
                          f"{reference.shape}; the files of one case must share their grid")
    if not np.allclose(other.affine, reference.affine, atol=1e-3):
        raise VolumeError(f"{other.path.name} and {reference.path.name} have different affines "
                          "(not co-registered); the files of one case must share their grid")


GRID_TOLERANCE_MM = 0.01  # float32 header storage moves corners by ~1e-5 mm; a real shift is far larger


def grid_offset_mm(affine_a: np.ndarray, affine_b: np.ndarray, shape: tuple[int, ...]) -> float:
    """How far apart (mm) the two affines put the outer corners of a ``shape`` voxel grid: the largest
    distance over the 8 corners of the voxel boxes (indices -0.5 and n-0.5)."""
    extents = [(-0.5, n - 0.5) for n in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in extents[0] for j in extents[1] for k in extents[2]])
    return float(np.max(np.linalg.norm((corners @ (affine_a - affine_b).T)[:, :3], axis=1)))


def load_label_image(path: Path | str, volume: Volume) -> LabelVolume:
    """Read a NIfTI label map onto ``volume`` (same grid required) as a display-oriented ``LabelVolume``."""
    path = Path(path)
    image = _open(path)
    source = volume.source
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if shape != tuple(source.shape):
        raise VolumeError(f"label map {path.name} has shape {shape} but the volume's file grid is "
                          f"{tuple(source.shape)}; it belongs to another image")
    offset = grid_offset_mm(np.asarray(image.affine, np.float64), source.affine, shape)
    if offset > GRID_TOLERANCE_MM:
        raise VolumeError(f"label map {path.name} is not aligned with this image: its voxel corners lie "
                          f"up to {offset:.3g} mm from the volume's; it belongs to another grid")  # fmt: skip
    data = _read_voxels(lambda: np.asarray(image.dataobj), path.name).reshape(shape)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise VolumeError(f"label map {path.name} has non-integer values")
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if low < 0:
        raise VolumeError(f"label map {path.name} has negative labels (minimum {low})")
    labels = source.to_display_array(data.astype(dtype_for(high)))
    return LabelVolume(labels)
