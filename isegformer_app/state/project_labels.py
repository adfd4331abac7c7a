"""Labels belong to a project (a folder of images, or one volume), not to the user's settings.

Each project keeps its class list in a small JSON file beside its autosaves; a project opened for the
first time starts from the user's default label set (the settings), and editing labels changes only
the open project's list. The default set changes when the user says so (or while nothing is open).
"""

from __future__ import annotations

import json
from pathlib import Path

from isegformer_app.state.labels import LabelList
from model.atomic_io import atomic_write_text

LABELS_FILE = "labels.json"
MAX_LABELS_BYTES = 1 << 20  # a label list is a few hundred bytes; refuse anything absurd


class ProjectLabelsError(ValueError):
    """The project's label file exists but cannot be used (the default set is used instead)."""


def project_labels_path(sidecar_folder: Path, stem: str = "") -> Path:
    """The label file of a project whose autosaves go to ``sidecar_folder`` (``stem``: one volume's)."""
    return sidecar_folder / (f"{stem}.{LABELS_FILE}" if stem else LABELS_FILE)


def read_project_labels(path: Path, default: list[dict]) -> LabelList:
    """The project's labels, or a copy of ``default`` if it has none yet; ProjectLabelsError if the
    file is damaged (it is left untouched)."""
    if not path.is_file():
        return LabelList.from_json(default)
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        items = json.loads(path.read_text(encoding="utf-8"))["labels"]
        labels = LabelList.from_json(items)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProjectLabelsError(f"The label file {path.name} is unreadable ({exc}); the default labels "
                                 "are shown and the file is left as it is until they are edited.") from exc
    return labels


def write_project_labels(labels: LabelList, path: Path) -> None:
    """Write the project's labels atomically (safe off the GUI thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"version": 1, "labels": labels.to_json()}, indent=1))
