"""PASCAL VOC instance segmentation: ``JPEGImages/`` + ``SegmentationObject/`` + ``ImageSets/Segmentation``.

Official ``SegmentationObject`` PNGs are palette images: the palette index is the instance id and
255 is the void border (ignored). A PNG without palette is read as the original code reads every
file, as the grey value of its colour, 220 (the grey of VOC's void colour) being ignored. Reading the
index is the more faithful of the two: the grey values of palette colours 1 and 16 coincide.

Split ``val`` evaluates every instance of every image of ``val.txt``. RITM's published numbers use
split ``test``: ``ImageSets/Segmentation/test.pickle`` = (image ids, grey instance ids), one object
each (3417 instances of the val images); it is read with an unpickler that accepts only plain
lists, strings and numbers. By default the ``test`` list is used when that file exists.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import cv2
import numpy as np

from model.untrusted import open_image
from training.datasets.base import EvalDataset, Sample

PALETTE_VOID = 255
GREY_VOID = 220
TEST_LIST = Path("ImageSets") / "Segmentation" / "test.pickle"


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists/tuples of strings and numbers (numpy scalars included) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an instance list")


class PascalVOCDataset(EvalDataset):
    """PASCAL VOC instances of split ``val``/``train``/``trainval`` or RITM's ``test`` instance list
    (default: ``test`` when ``ImageSets/Segmentation/test.pickle`` exists, else ``val``)."""

    LAYOUT = (
        "<root>/ImageSets/Segmentation/val.txt + <root>/JPEGImages/<id>.jpg + "
        "<root>/SegmentationObject/<id>.png (palette index = instance, 255 = void)"
    )

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        if split is None:
            split = "test" if (Path(root) / TEST_LIST).is_file() else "val"
        self.split = split
        self.LAYOUT = self.LAYOUT.replace("val.txt", "test.pickle" if split == "test" else f"{split}.txt")
        self._test_ids: dict[str, tuple[str, int]] = {}
        super().__init__(root)

    def _names(self) -> list[str]:
        self._images_dir = self.require_dir(self.root / "JPEGImages")
        self._masks_dir = self.require_dir(self.root / "SegmentationObject")
        if self.split == "test":
            return self._test_names(self.root / TEST_LIST)
        list_path = self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        return self.read_id_list(list_path)

    def _test_names(self, list_path: Path) -> list[str]:
        if not list_path.is_file():
            self.fail(list_path, "instance list not found")
        try:
            image_ids, instance_ids = _PlainUnpickler(io.BytesIO(list_path.read_bytes())).load()
            pairs = [(str(i), int(g)) for i, g in zip(image_ids, instance_ids, strict=True)]
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as error:
            self.fail(list_path, f"not a (image ids, instance ids) list ({error})")
        self.checked_ids(list_path, [image_id for image_id, _grey in pairs])
        names = [f"{image_id}#{grey_id}" for image_id, grey_id in pairs]
        self._test_ids = dict(zip(names, pairs, strict=True))
        return names

    def _load(self, name: str) -> Sample:
        image_id, test_id = self._test_ids.get(name, (name, None))
        image = self.read_rgb(self._images_dir / f"{image_id}.jpg")
        mask_path = self._masks_dir / f"{image_id}.png"
        if test_id is None:
            instances = self._read_instances(mask_path)
        else:  # the original's test split: the listed grey value is the object, 220 is ignored
            grey = cv2.cvtColor(self.read_mask_bgr(mask_path), cv2.COLOR_BGR2GRAY)
            instances = (grey == test_id).astype(np.int32)
            instances[grey == GREY_VOID] = -1
        self.check_shapes(mask_path, image, instances)
        return Sample(name=name, image=image, instances=instances)

    def _read_instances(self, path: Path) -> np.ndarray:
        if not path.is_file():
            self.fail(path, "missing mask")
        try:
            with open_image(path, ("PNG",)) as pil_mask:
                if pil_mask.mode == "P":
                    values, void = np.array(pil_mask).astype(np.int32), PALETTE_VOID
                else:
                    values, void = None, GREY_VOID
        except OSError as error:
            self.fail(path, f"unreadable mask ({error})")
        if values is None:
            values = cv2.cvtColor(self.read_mask_bgr(path), cv2.COLOR_BGR2GRAY).astype(np.int32)
        values[values == void] = -1
        return values
