"""Benchmark dataset readers for the NoC evaluation, by name.

Every reader yields :class:`Sample` (``image`` HxWx3 uint8, ``instances`` HxW int32 with 0 =
background, -1 = ignored, ids > 0 = objects); a missing or malformed dataset raises
:class:`DatasetError` naming the path and the expected layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from training.datasets.base import DatasetError, EvalDataset, Sample
from training.datasets.export import ExportDataset
from training.datasets.medical import BraTSDataset, OAIZIBDataset, SsTEMDataset
from training.datasets.paired import BerkeleyDataset, CocoMValDataset, DavisDataset, GrabCutDataset
from training.datasets.pascal_voc import PascalVOCDataset
from training.datasets.sbd import SBDDataset

# name -> (reader, folder under --data-root)
DATASETS: dict[str, tuple[Callable[[Path], EvalDataset], str]] = {
    "GrabCut": (GrabCutDataset, "GrabCut"),
    "Berkeley": (BerkeleyDataset, "Berkeley"),
    "DAVIS": (DavisDataset, "DAVIS"),
    "COCO_MVal": (CocoMValDataset, "COCO_MVal"),
    "SBD": (SBDDataset, "SBD"),
    "PascalVOC": (PascalVOCDataset, "PascalVOC"),
    "BraTS": (BraTSDataset, "BraTS"),
    "ssTEM": (SsTEMDataset, "ssTEM"),
    "OAIZIB": (OAIZIBDataset, "OAI-ZIB"),
    "Export": (ExportDataset, "Export"),
}


def canonical_name(name: str) -> str:
    """The registered spelling of ``name`` (case-insensitive); ValueError listing the names otherwise."""
    for known in DATASETS:
        if known.lower() == name.strip().lower():
            return known
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def default_path(name: str, data_root: str | Path) -> Path:
    """Where dataset ``name`` lives under ``data_root`` (SBD also as ``SBD/dataset``)."""
    name = canonical_name(name)
    path = Path(data_root) / DATASETS[name][1]
    if name == "SBD" and not (path / "img").is_dir() and (path / "dataset" / "img").is_dir():
        path = path / "dataset"
    return path


def open_dataset(name: str, path: str | Path) -> EvalDataset:
    """The reader of dataset ``name`` on the folder ``path``."""
    reader, _ = DATASETS[canonical_name(name)]
    return reader(Path(path))


__all__ = [
    "DATASETS",
    "DatasetError",
    "EvalDataset",
    "Sample",
    "canonical_name",
    "default_path",
    "open_dataset",
]
