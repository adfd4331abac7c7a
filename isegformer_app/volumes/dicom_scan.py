"""Find the image series in a DICOM folder (for a series chooser) and note the files that are skipped."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import VolumeError
from .progress import CancelFlag, LoadMonitor, ProgressCallback

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
NON_VOLUME_MODALITIES = {"SEG": "segmentation object", "RTSTRUCT": "RT structure set",
                         "RTPLAN": "RT plan", "SR": "structured report", "PR": "presentation state",
                         "KO": "key object selection"}
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder (``n_slices`` counts frames of multi-frame files)."""

    uid: str
    description: str
    modality: str
    n_files: int
    n_slices: int
    rows: int
    columns: int
    series_number: int | None
    patient_id: str
    files: tuple[Path, ...]
    planes: str = ""  # "axial", "coronal", "sagittal", "oblique", or several joined by "+"
    time: str = ""  # SeriesTime (else AcquisitionTime) as HH:MM:SS

    def label(self) -> str:
        """A one-line description for a series chooser: series that share a description still read
        differently (plane, time, the end of the UID)."""
        number = f"#{self.series_number} " if self.series_number is not None else ""
        details = [self.modality, self.planes, f"{self.n_slices} slice(s)", f"{self.columns}x{self.rows}",
                   self.time, f"UID …{self.uid[-8:]}"]  # fmt: skip
        return f"{number}{self.description or '(no description)'} — " + ", ".join(d for d in details if d)


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class DicomScan:
    """Result of ``scan_dicom_folder``: the image series and the files left out, with reasons."""

    folder: Path
    series: list[SeriesInfo] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return [f"skipped {item.path.name}: {item.reason}" for item in self.skipped]

    def find(self, uid: str) -> SeriesInfo:
        for info in self.series:
            if info.uid == uid:
                return info
        raise VolumeError(f"no series {uid!r} in {self.folder}; found: "
                          + "; ".join(info.label() for info in self.series))


def read_header(path: Path) -> Dataset:
    """Read a DICOM file without loading its pixel data; ``InvalidDicomError`` if it is not DICOM.

    Files without the 128-byte preamble are accepted when they parse to a dataset with a SOP class.
    """
    try:
        return pydicom.dcmread(path, defer_size=4096)
    except InvalidDicomError:
        pass
    try:
        dataset = pydicom.dcmread(path, defer_size=4096, force=True)
    except Exception as exc:  # a forced read of a non-DICOM file can fail in many ways
        raise InvalidDicomError(f"{path.name} is not a DICOM file") from exc
    if "SOPClassUID" not in dataset:
        raise InvalidDicomError(f"{path.name} is not a DICOM file")
    return dataset


def skip_reason(dataset: Dataset) -> str | None:
    """Why a parsed DICOM dataset is not a usable image slice (``None`` if it is)."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in dataset:
        return "DICOMDIR index file"
    modality = str(dataset.get("Modality", "")).upper()
    if modality in NON_VOLUME_MODALITIES:
        return f"{NON_VOLUME_MODALITIES[modality]} ({modality}), not an image"
    if not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
        name = getattr(dataset.get("SOPClassUID"), "name", sop_class or "unknown SOP class")
        return f"no pixel data ({name})"
    if "Rows" not in dataset or "Columns" not in dataset:
        return "image without Rows/Columns"
    return None


def _list_files(folder: Path, recursive: bool) -> list[Path]:
    if recursive:
        found = [Path(root) / name for root, _, names in os.walk(folder) for name in names]
    else:
        found = [path for path in folder.iterdir() if path.is_file()]
    return sorted(path for path in found if not path.name.startswith("."))


def scan_dicom_folder(folder: Path | str, recursive: bool = True, progress: ProgressCallback | None = None,
                      cancel: CancelFlag | None = None) -> DicomScan:
    """Group the DICOM image files under ``folder`` by SeriesInstanceUID."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder} is not a folder")
    monitor = LoadMonitor(progress, cancel)
    files = _list_files(folder, recursive)
    scan = DicomScan(folder)
    groups: dict[str, list[_Summary]] = {}
    for position, path in enumerate(files):
        if position % 16 == 0:
            monitor.report(position / max(len(files), 1), f"scanning {path.name}")
        try:
            dataset = read_header(path)
            reason = skip_reason(dataset)
            summary = None if reason is not None else _summarize(path, dataset)
        except InvalidDicomError:
            scan.skipped.append(SkippedFile(path, "not a DICOM file"))
            continue
        except Exception as exc:  # truncated or corrupt header, malformed values
            scan.skipped.append(SkippedFile(path, f"unreadable DICOM ({type(exc).__name__}: {exc})"))
            continue
        if summary is None:
            scan.skipped.append(SkippedFile(path, reason or "not an image"))
            continue
        groups.setdefault(summary.uid, []).append(summary)
    scan.series = sorted((_series_info(uid, members) for uid, members in groups.items()),
                         key=lambda info: (info.series_number is None, info.series_number or 0, info.uid))
    monitor.report(1.0, f"found {len(scan.series)} series")
    return scan


@dataclass(frozen=True)
class _Summary:
    path: Path
    uid: str
    modality: str
    description: str
    series_number: int | None
    frames: int
    rows: int
    columns: int
    patient_id: str
    plane: str = ""
    time: str = ""


def slice_plane(orientation: object) -> str:
    """"axial", "coronal" or "sagittal" for an ImageOrientationPatient (6 numbers) whose slice normal
    lies within ~35° of a patient axis, "oblique" otherwise, "" if missing or malformed."""
    try:
        values = [float(v) for v in orientation]
    except (TypeError, ValueError):
        return ""
    if len(values) != 6:
        return ""
    row, col = values[:3], values[3:]
    normal = [row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
              row[0] * col[1] - row[1] * col[0]]  # fmt: skip
    size = sum(v * v for v in normal) ** 0.5
    if size < 1e-6:
        return ""
    strongest = max(range(3), key=lambda i: abs(normal[i]))
    if abs(normal[strongest]) / size < 0.82:
        return "oblique"
    return ("sagittal", "coronal", "axial")[strongest]


def _time_text(value: object) -> str:
    text = str(value or "").strip()
    digits = text.split(".")[0]
    if len(digits) >= 6 and digits[:6].isdigit():
        return f"{digits[0:2]}:{digits[2:4]}:{digits[4:6]}"
    return ""


def _summarize(path: Path, dataset: Dataset) -> _Summary:
    """The header values a series listing needs (raises on malformed values)."""
    number = dataset.get("SeriesNumber")
    return _Summary(
        path=path,
        uid=str(dataset.get("SeriesInstanceUID", "")) or "(no SeriesInstanceUID)",
        modality=str(dataset.get("Modality", "") or "OT"),
        description=str(dataset.get("SeriesDescription", "") or dataset.get("ProtocolName", "") or ""),
        series_number=int(number) if number not in (None, "") else None,
        frames=int(dataset.get("NumberOfFrames", 1) or 1),
        rows=int(dataset.Rows),
        columns=int(dataset.Columns),
        patient_id=str(dataset.get("PatientID", "")),
        plane=slice_plane(dataset.get("ImageOrientationPatient")),
        time=_time_text(dataset.get("SeriesTime") or dataset.get("AcquisitionTime")),
    )


def _series_info(uid: str, members: list[_Summary]) -> SeriesInfo:
    first = members[0]
    return SeriesInfo(
        uid=uid,
        description=first.description,
        modality="/".join(sorted({member.modality for member in members})),
        n_files=len(members),
        n_slices=sum(member.frames for member in members),
        rows=first.rows,
        columns=first.columns,
        series_number=first.series_number,
        patient_id=first.patient_id,
        files=tuple(member.path for member in members),
        planes="+".join(p for p in ("axial", "coronal", "sagittal", "oblique")
                        if p in {member.plane for member in members}),
        time=first.time,
    )
