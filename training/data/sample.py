"""A training sample: an image plus layers of encoded instance masks (RITM's ``DSample``).

``layers`` (H, W, L) int32: each object is the pixels of one layer equal to one value
(``ObjectInfo.layer``, ``ObjectInfo.value``); value 0 is background in every layer. Objects may form
a hierarchy (``parent``/``children``, COCO+LVIS); regions in ``ignore`` are -1 in object masks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ObjectInfo:
    layer: int
    value: int
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    area: int = 0


@dataclass
class TrainSample:
    """``image`` (H, W, 3) uint8 RGB, ``layers`` (H, W, L) int32, ``objects`` id -> :class:`ObjectInfo`,
    ``ignore`` list of (layer, value) regions left out of the loss."""

    image: np.ndarray
    layers: np.ndarray
    objects: dict[int, ObjectInfo]
    ignore: list[tuple[int, int]] = field(default_factory=list)
    sample_id: str = ""

    def __post_init__(self) -> None:
        if self.layers.ndim == 2:
            self.layers = self.layers[:, :, None]
        if self.layers.shape[:2] != self.image.shape[:2]:
            raise ValueError(
                f"mask size {self.layers.shape[:2]} differs from image size {self.image.shape[:2]}"
            )

    def __len__(self) -> int:
        return len(self.objects)

    def copy(self) -> TrainSample:
        return TrainSample(
            self.image, self.layers, copy.deepcopy(self.objects), list(self.ignore), self.sample_id
        )

    @property
    def root_objects(self) -> list[int]:
        """Ids of the objects without a parent."""
        return [i for i, info in self.objects.items() if info.parent is None]

    def object_mask(self, object_id: int) -> np.ndarray:
        """(H, W) int32: 1 on the object, -1 on ignored regions, 0 elsewhere."""
        info = self.objects[object_id]
        mask = (self.layers[:, :, info.layer] == info.value).astype(np.int32)
        for layer, value in self.ignore:
            mask[self.layers[:, :, layer] == value] = -1
        return mask

    def background_mask(self) -> np.ndarray:
        """(H, W) bool: pixels that belong to no object (and no ignored region) in any layer."""
        return self.layers.max(axis=2) == 0

    def compute_areas(self) -> None:
        """Pixel counts of every object; values present in the layers but not listed as an object (nor
        ignored) are erased to background, as the original does."""
        listed = {(info.layer, info.value): i for i, info in self.objects.items()}
        ignored = set(self.ignore)
        for info in self.objects.values():
            info.area = 0
        for layer in range(self.layers.shape[2]):
            values, counts = np.unique(self.layers[:, :, layer], return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                if value == 0 or (layer, value) in ignored:
                    continue
                if (layer, value) in listed:
                    self.objects[listed[(layer, value)]].area = int(count)
                else:
                    plane = self.layers[:, :, layer]
                    plane[plane == value] = 0

    def remove_small_objects(self, min_area: int) -> None:
        """Drop objects smaller than ``min_area`` pixels (children move to the parent)."""
        for object_id in [i for i, info in self.objects.items() if info.area < min_area]:
            self._remove(object_id)

    def _remove(self, object_id: int) -> None:
        info = self.objects.pop(object_id)
        for child in info.children:
            if child in self.objects:
                self.objects[child].parent = info.parent
        if info.parent is not None and info.parent in self.objects:
            parent = self.objects[info.parent]
            parent.children = [c for c in parent.children if c != object_id] + info.children


def sample_from_instances(image: np.ndarray, instances: np.ndarray, sample_id: str = "") -> TrainSample:
    """A flat sample from an instance map (H, W) int: 0 = background, -1 = ignored, ids > 0 = objects."""
    instances = np.asarray(instances, dtype=np.int32)
    layer = instances.copy()
    has_ignore = bool((layer == -1).any())
    ignore_value = int(layer.max()) + 1 if has_ignore else 0
    if has_ignore:
        layer[layer == -1] = ignore_value
    ids = [int(v) for v in np.unique(layer) if v > 0 and v != ignore_value]
    objects = {k: ObjectInfo(layer=0, value=v) for k, v in enumerate(ids)}
    ignore = [(0, ignore_value)] if has_ignore else []
    sample = TrainSample(np.ascontiguousarray(image), layer[:, :, None], objects, ignore, sample_id)
    sample.compute_areas()
    return sample
