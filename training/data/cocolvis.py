"""COCO+LVIS in the layout RITM prepared (``cocolvis``), read for training.

Layout (per split ``train`` / ``val``)::

    <root>/<split>/images/<image_id>.jpg
    <root>/<split>/masks/<image_id>.pickle     (encoded_layers, objs_mapping)
    <root>/<split>/hannotation.pickle          {image_id: {'hierarchy': {obj: None | {...}},
                                                            'num_instance_masks': n, ...}}

``encoded_layers`` is a list of PNG-encoded (``cv2.imencode``) uint8/uint16 label layers;
``objs_mapping[obj] = (layer, value)``. Objects ``0 .. num_instance_masks-1`` are instances (their
``hierarchy`` entry is None for a flat object, or gives ``parent``/``children``); the following ones
are "stuff" regions, used as extra objects with ``stuff_prob`` and erased to background otherwise.
The pickles are read with an unpickler that only builds plain containers, numbers and numpy arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.untrusted import ImageTooLarge, check_image_size, imread_checked
from training.data.sample import ObjectInfo, TrainSample
from training.datasets.base import DatasetError

LAYOUT = (
    "<root>/<split>/images/<id>.jpg + <root>/<split>/masks/<id>.pickle + <root>/<split>/hannotation.pickle"
)


class _ArrayUnpickler(pickle.Unpickler):
    """Builds dicts/lists/tuples/numbers/strings and numpy arrays; refuses every other class."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset pickle")


def load_plain_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`_ArrayUnpickler`; DatasetError if missing or malformed."""
    if not path.is_file():
        raise DatasetError(path, LAYOUT, "file not found")
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DatasetError(path, LAYOUT, f"unreadable pickle ({error})") from None


class CocoLvisSource:
    """Samples of one split: ``len(source)`` images, ``source.load(i, rng)`` -> :class:`TrainSample`.

    ``stuff_prob``: probability that the stuff regions of an image become objects (0.3 in training).
    """

    def __init__(self, root: str | Path, split: str = "train", stuff_prob: float = 0.0) -> None:
        self.split_dir = Path(root) / split
        if not self.split_dir.is_dir():
            raise DatasetError(self.split_dir, LAYOUT, "split folder not found")
        self.stuff_prob = stuff_prob
        annotation = load_plain_pickle(self.split_dir / "hannotation.pickle")
        if not isinstance(annotation, dict) or not annotation:
            raise DatasetError(self.split_dir / "hannotation.pickle", LAYOUT, "expected a non-empty dict")
        self.entries: list[tuple[str, dict]] = sorted((str(k), v) for k, v in annotation.items())

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        image_id, entry = self.entries[index]
        image_path = self.split_dir / "images" / f"{image_id}.jpg"
        try:
            image = imread_checked(image_path, cv2.IMREAD_COLOR)
        except ImageTooLarge as error:
            raise DatasetError(image_path, LAYOUT, f"image too large to read ({error})") from error
        if image is None:
            raise DatasetError(image_path, LAYOUT, "missing or unreadable image")
        masks_path = self.split_dir / "masks" / f"{image_id}.pickle"
        encoded_layers, mapping = load_plain_pickle(masks_path)
        try:
            for buf in encoded_layers:  # PNG layers: their declared size is checked before decoding
                check_image_size(bytes(np.asarray(buf, dtype=np.uint8)))
        except ImageTooLarge as error:
            raise DatasetError(masks_path, LAYOUT, f"mask layer too large to read ({error})") from error
        planes = [
            cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED) for buf in encoded_layers
        ]
        if any(p is None or p.shape != image.shape[:2] for p in planes):
            raise DatasetError(masks_path, LAYOUT, "mask layers do not decode to the image size")
        layers = np.stack(planes, axis=2).astype(np.int32)

        num_instances = int(entry["num_instance_masks"])
        objects: dict[int, ObjectInfo] = {}
        for object_id, node in entry["hierarchy"].items():
            layer, value = mapping[object_id]
            node = node or {}
            objects[int(object_id)] = ObjectInfo(
                layer=int(layer),
                value=int(value),
                parent=node.get("parent"),
                children=[int(c) for c in node.get("children", [])],
            )
        use_stuff = self.stuff_prob > 0 and rng.random() < self.stuff_prob
        for object_id in range(num_instances, len(mapping)):
            layer, value = (int(v) for v in mapping[object_id])
            if use_stuff:
                objects[object_id] = ObjectInfo(layer=layer, value=value)
            else:
                plane = layers[:, :, layer]
                plane[plane == value] = 0
        return TrainSample(np.ascontiguousarray(image[:, :, ::-1]), layers, objects, sample_id=image_id)
