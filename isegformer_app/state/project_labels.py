"""Labels belong to a project (a folder of images, or one volume), not to the user's settings.

Each project keeps its class list (and which class is selected) in a small JSON file beside its
autosaves; a project opened for the first time starts from the user's default label set for its kind of
data (photos or volumes, see :meth:`LabelList.default_for`), and editing labels changes only the open
project's list. The default set changes when the user says so (or while nothing is open).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass
class ProjectLabels:
    """A project's class list and the class selected for the next object (its name; "" = the first)."""

    labels: LabelList
    selected: str = ""


def read_project_labels(path: Path, default: LabelList) -> ProjectLabels:
    """The project's labels, or a copy of ``default`` if it has none yet; ProjectLabelsError if the
    file is damaged (it is left untouched)."""
    if not path.is_file():
        return ProjectLabels(LabelList.from_json(default.to_json()))
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = LabelList.from_json(data["labels"])
        selected = str(data.get("selected", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProjectLabelsError(f"The label file {path.name} is unreadable ({exc}); the default labels "
                                 "are shown and the file is left as it is until they are edited.") from exc
    return ProjectLabels(labels, selected if labels.get(selected) is not None else "")


def write_project_labels(project: ProjectLabels, path: Path) -> None:
    """Write the project's labels and selected class atomically (safe off the GUI thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "labels": project.labels.to_json(), "selected": project.selected}
    atomic_write_text(path, json.dumps(data, indent=1))
