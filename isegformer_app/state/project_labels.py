"""Labels belong to a project (a folder of images, or one volume), not to the user's settings.

Each project keeps its class list (and which class is selected) in a small JSON file beside its
autosaves; a project opened for the first time starts from the user's default label set for its kind of
data (photos or volumes, see :meth:`LabelList.default_for`), and editing labels changes only the open
project's list. The default set changes when the user says so (or while nothing is open).

Two instances may edit one project's list (a shared folder): a write never replaces a list that another
instance saved since this one read it; their new classes are merged in (see
:mod:`~isegformer_app.state.disk_version`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isegformer_app.state.disk_version import DiskStamp, stamp_of, write_merging
from isegformer_app.state.labels import LabelClass, LabelList
from model.untrusted import parse_json

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


@dataclass(frozen=True)
class LabelsSeen:
    """A label file as this instance last read or wrote it: its stamp and its class names."""

    stamp: DiskStamp | None = None
    names: frozenset[str] = frozenset()


def read_project_labels(path: Path, default: LabelList) -> tuple[ProjectLabels, LabelsSeen]:
    """The project's labels and selected class (a copy of ``default`` if it has none yet) and what was
    seen of the file; ProjectLabelsError if the file is damaged (it is left untouched until the labels
    are edited)."""
    stamp = stamp_of(path)
    project = _parse(path) if path.is_file() else ProjectLabels(LabelList.from_json(default.to_json()))
    return project, LabelsSeen(stamp, frozenset(project.labels.names()))


def _parse(path: Path) -> ProjectLabels:
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        data = parse_json(path.read_text(encoding="utf-8"))
        labels = LabelList.from_json(data["labels"])
        selected = str(data.get("selected", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProjectLabelsError(f"The label file {path.name} is unreadable ({exc}); the default labels "
                                 "are shown and the file is left as it is until they are edited.") from exc
    return ProjectLabels(labels, selected if labels.get(selected) is not None else "")


def write_project_labels(project: ProjectLabels, path: Path,
                         seen: LabelsSeen = LabelsSeen()) -> tuple[LabelsSeen, list[LabelClass]]:  # fmt: skip
    """Write the project's labels and selected class atomically (safe off the GUI thread). If another
    instance saved the file since it was ``seen``, its classes that ``project`` neither has nor had are
    appended to ``project.labels`` first (the selected class stays this instance's); returns what is
    seen now and those merged classes (for the window's list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = project.labels
    merged: list[LabelClass] = []

    def merge() -> None:
        try:
            theirs = _parse(path).labels if path.is_file() else LabelList([])
        except ProjectLabelsError:
            return  # a damaged file is replaced, as when it was read damaged
        for cls in theirs.classes:
            if labels.get(cls.name) is None and cls.name not in seen.names:
                labels.classes.append(LabelClass(cls.name, cls.color))
                merged.append(labels.classes[-1])

    def encode() -> bytes:
        data = {"version": 1, "labels": labels.to_json(), "selected": project.selected}
        return json.dumps(data, indent=1).encode("utf-8")

    stamp = write_merging(path, seen.stamp, encode, merge)
    return LabelsSeen(stamp, frozenset(labels.names())), merged
