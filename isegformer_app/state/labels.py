"""Class labels: an editable, ordered list of (name, colour); class id = position + 1 (0 = background)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Color = tuple[int, int, int]

# A few well-separated colours (PASCAL VOC palette order, background skipped).
_BASE_COLORS: list[Color] = [
    (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (192, 64, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
    (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip

DEFAULT_LABELS = ("object", "person", "animal", "vehicle")  # photos
VOLUME_DEFAULT_LABELS = ("structure 1",)  # volumes start neutral: anatomy is not a "person"

# Label sets a user can pick for a project (Edit > Label presets); class id = position + 1.
LABEL_PRESETS: dict[str, tuple[str, ...]] = {
    "Photos (object, person, animal, vehicle)": DEFAULT_LABELS,
    "Neutral (structure 1)": VOLUME_DEFAULT_LABELS,
    # BraTS 2023 label values 1, 2, 3 (the 2021 files use 4 for the enhancing tumour)
    "BraTS tumour regions": ("necrotic tumour core", "peritumoral oedema", "enhancing tumour"),
    # OAI-ZIB label values 1..4
    "Knee bones and cartilage (OAI-ZIB)": ("femur", "femoral cartilage", "tibia", "tibial cartilage"),
}

DataKind = Literal["photos", "volumes"]


def as_color(value: object) -> Color:
    """The (r, g, b) colour of a saved or typed value (a list or tuple of three numbers), each clamped to
    0..255 (a hand-edited label file must not break overlays and palettes); ValueError otherwise."""
    try:
        color = tuple(min(255, max(0, int(v))) for v in value)  # type: ignore[union-attr]
    except OverflowError as exc:  # int(inf)
        raise ValueError(f"not an RGB colour: {value!r}") from exc
    if len(color) != 3:
        raise ValueError(f"not an RGB colour: {value!r}")
    return color  # type: ignore[return-value]


def color_for_index(index: int) -> Color:
    """A distinct-looking colour for the ``index``-th class or instance (deterministic)."""
    if index < len(_BASE_COLORS):
        return _BASE_COLORS[index]
    rng = np.random.default_rng(index)
    r, g, b = (int(v) for v in rng.integers(40, 256, size=3))
    return r, g, b


@dataclass
class LabelClass:
    name: str
    color: Color


class LabelList:
    """Ordered class list; ``class_id(name)`` = 1-based position, unknown names are appended."""

    def __init__(self, classes: list[LabelClass] | None = None) -> None:
        if classes is None:
            classes = LabelList.of_names(DEFAULT_LABELS).classes
        self.classes: list[LabelClass] = list(classes)

    @classmethod
    def of_names(cls, names: tuple[str, ...] | list[str]) -> LabelList:
        """Classes ``names`` in order, with the standard colours."""
        return cls([LabelClass(n, color_for_index(i)) for i, n in enumerate(names)])

    @classmethod
    def default_for(cls, kind: DataKind, saved: list[dict] | None = None) -> LabelList:
        """The label set a new project of ``kind`` starts with: ``saved`` (the user's default for that
        kind, from the settings) if any, else the built-in one (photos: object, person, ...; volumes:
        a neutral "structure 1")."""
        if saved:
            return cls.from_json(saved)
        return cls.of_names(VOLUME_DEFAULT_LABELS if kind == "volumes" else DEFAULT_LABELS)

    def with_preset(self, names: tuple[str, ...], keep: set[str] = frozenset()) -> LabelList:
        """The preset ``names`` (standard colours), followed by the classes of this list named in
        ``keep`` (those objects already use) that the preset lacks."""
        preset = LabelList.of_names(names)
        kept = [LabelClass(c.name, c.color) for c in self.classes if c.name in keep and c.name not in names]
        return LabelList(preset.classes + kept)

    def __len__(self) -> int:
        return len(self.classes)

    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def get(self, name: str) -> LabelClass | None:
        return next((c for c in self.classes if c.name == name), None)

    def ensure(self, name: str, color: Color | None = None) -> LabelClass:
        """The class called ``name``, appended (with ``color`` or a fresh colour) if missing."""
        found = self.get(name)
        if found is None:
            found = LabelClass(name, color or color_for_index(len(self.classes)))
            self.classes.append(found)
        return found

    def class_id(self, name: str) -> int:
        self.ensure(name)
        return self.names().index(name) + 1

    def rename(self, old: str, new: str) -> None:
        if not new or self.get(new) is not None:
            raise ValueError(f"label {new!r} is empty or already exists")
        cls = self.get(old)
        if cls is None:
            raise KeyError(old)
        cls.name = new

    def palette(self) -> np.ndarray:
        """(len+1)x3 uint8 palette: row 0 black background, row k the colour of class id k."""
        rows = [(0, 0, 0)] + [c.color for c in self.classes]
        return np.array(rows, dtype=np.uint8)

    def to_json(self) -> list[dict]:
        return [{"name": c.name, "color": list(c.color)} for c in self.classes]

    @classmethod
    def from_json(cls, items: list[dict] | None) -> LabelList:
        if not items:
            return cls()
        classes = []
        for i, item in enumerate(items):
            classes.append(LabelClass(str(item["name"]), as_color(item.get("color") or color_for_index(i))))
        return cls(classes)


def relabel(doc, uid: int, labels: LabelList, name: str) -> LabelClass:
    """Give object ``uid`` of ``doc`` (an image or a volume document) the class ``name`` (added to
    ``labels`` if new) and its colour, in one undo step. Returns the class."""
    cls = labels.ensure(name)
    obj = doc.object(uid)
    if obj.label != cls.name or tuple(obj.color) != tuple(cls.color):
        doc.relabel_object(uid, cls.name, cls.color)
    return cls
