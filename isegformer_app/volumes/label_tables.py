"""Label name/colour tables: ITK-SNAP label description files and 3D Slicer colour tables."""

from __future__ import annotations

import re
from pathlib import Path

from model.atomic_io import atomic_write_text

from .errors import VolumeError
from .labels import MAX_LABEL, LabelInfo, LabelVolume, default_label_info


def _entries(labels: LabelVolume | dict[int, LabelInfo]) -> list[LabelInfo]:
    table = dict(labels.labels) if isinstance(labels, LabelVolume) else dict(labels)
    if isinstance(labels, LabelVolume):
        for value in labels.present_values():
            table.setdefault(value, default_label_info(value))
    entries = {0: default_label_info(0)}
    entries.update({value: info for value, info in table.items() if value != 0})
    return [entries[value] for value in sorted(entries)]


def _one_line(name: str) -> str:
    """``name`` with line breaks, tabs and other control characters as spaces (one table row per label)."""
    return "".join(ch if ch.isprintable() else " " for ch in name)


def itksnap_label_text(labels: LabelVolume | dict[int, LabelInfo]) -> str:
    """ITK-SNAP label description text (IDX R G B A VIS MSH "LABEL" per line)."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        "# File format: ",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields: ",
        "#    IDX:   Zero-based index ",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description ",
        "################################################",
    ]
    for info in _entries(labels):
        name = _one_line(info.name).replace('"', "'")
        r, g, b = info.color
        visible = int(info.visible and info.value != 0)
        lines.append(f"{info.value:5d} {r:5d} {g:4d} {b:4d} {info.opacity:8.2f} {visible:2d} {visible:2d}    "
                     f'"{name}"')
    return "\n".join(lines) + "\n"


def slicer_color_table_text(labels: LabelVolume | dict[int, LabelInfo]) -> str:
    """3D Slicer colour table text (``index name R G B A``; spaces in names become underscores)."""
    entries = _entries(labels)
    lines = ["# Color table file written by isegformer", f"# {len(entries)} values"]
    for info in entries:
        name = re.sub(r"\s+", "_", info.name.strip()) or f"Label_{info.value}"
        r, g, b = info.color
        alpha = round(info.opacity * 255)
        lines.append(f"{info.value} {name} {r} {g} {b} {alpha}")
    return "\n".join(lines) + "\n"


def write_itksnap_labels(labels: LabelVolume | dict[int, LabelInfo], path: Path | str) -> Path:
    """Write an ITK-SNAP label description file (usually ``*.txt``) atomically."""
    path = Path(path)
    atomic_write_text(path, itksnap_label_text(labels))
    return path


def write_slicer_color_table(labels: LabelVolume | dict[int, LabelInfo], path: Path | str) -> Path:
    """Write a 3D Slicer colour table (``*.ctbl`` or ``*.txt``) atomically."""
    path = Path(path)
    atomic_write_text(path, slicer_color_table_text(labels))
    return path


# A table of all 65,536 labels with long names is under 8 MiB; a larger file is not a label table.
MAX_TABLE_BYTES = 8 << 20
_ITKSNAP_ROW = re.compile(
    r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+(?:\.\d*)?|\.\d+)\s+(\d)\s+(\d)\s+"(.*)"\s*$'
)


def read_itksnap_labels(path: Path | str) -> dict[int, LabelInfo]:
    """Parse an ITK-SNAP label description file. Rows that do not parse and values beyond
    :data:`MAX_LABEL` are skipped; colours are clamped to 0..255 and opacities to 0..1 (hand-edited
    tables must not break palettes). ``VolumeError`` for a file too large to be a table."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise VolumeError(f"{path.name} is {size >> 20} MiB: not a label description file")
    table: dict[int, LabelInfo] = {}
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        match = _ITKSNAP_ROW.match(line)
        if not match or int(match.group(1)) > MAX_LABEL:
            continue
        value, r, g, b = (int(match.group(i)) for i in range(1, 5))
        color = (min(255, r), min(255, g), min(255, b))
        opacity = min(1.0, float(match.group(5)))
        table[value] = LabelInfo(value, match.group(8), color, opacity, bool(int(match.group(6))))
    return table


def nifti_stem(path: Path | str) -> str:
    """The file name without ``.nii.gz`` / ``.nii`` (or its last suffix)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def table_paths(nifti_path: Path | str) -> tuple[Path, Path]:
    """(ITK-SNAP label file ``<stem>_itksnap.txt``, Slicer colour table ``<stem>.ctbl``) beside a label
    map."""
    nifti_path = Path(nifti_path)
    stem = nifti_stem(nifti_path)
    return nifti_path.with_name(f"{stem}_itksnap.txt"), nifti_path.with_name(f"{stem}.ctbl")
