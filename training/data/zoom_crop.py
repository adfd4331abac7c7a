"""Training crops at the scale the predictor sees an object: the ZoomIn rule.

The predictor (:class:`model.transforms.ZoomIn`) looks at an object through its box expanded
``expansion_ratio`` times (each side at least ``min_crop_size``), resized so that the longer side is
``target_size``. :class:`ZoomCropSource` gives the trainer one object per sample at that same pixel
scale (times a small random factor), in a ``crop_size`` window around it, so a 15-px nucleus is
learnt as the predictor will show it (about 2x) and not at the image's own scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.transforms import ZoomIn
from training.data.dataset import SampleSource
from training.data.sample import ObjectInfo, TrainSample


def zoom_scale(object_side: float, zoom: ZoomIn) -> float:
    """The factor by which the predictor's ZoomIn resizes an object of longer box side ``object_side``."""
    return zoom.target_size / max(zoom.expansion_ratio * object_side, zoom.min_crop_size)


def object_boxes(layer: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """``value -> (top, bottom, left, right)`` (inclusive) of every non-zero value of an (H, W) label
    plane, in one pass over its pixels (not one per object: images of thousands of objects stay fast)."""
    ys, xs = np.nonzero(layer)
    if not len(ys):
        return {}
    values, inverse = np.unique(layer[ys, xs], return_inverse=True)
    tops = np.full(len(values), np.iinfo(np.int64).max)
    lefts = tops.copy()
    bottoms = np.full(len(values), -1)
    rights = bottoms.copy()
    np.minimum.at(tops, inverse, ys)
    np.maximum.at(bottoms, inverse, ys)
    np.minimum.at(lefts, inverse, xs)
    np.maximum.at(rights, inverse, xs)
    columns = (values, tops, bottoms, lefts, rights)
    return {
        value: (top, bottom, left, right)
        for value, top, bottom, left, right in zip(*(c.tolist() for c in columns), strict=True)
    }


def window_mask(sample: TrainSample, object_id: int, window: tuple[slice, slice]) -> np.ndarray:
    """(h, w) uint8, 1 on object ``object_id`` (not on ignored regions) inside ``window`` of the sample:
    :meth:`TrainSample.object_mask` on the window's pixels only, not the whole image's."""
    info = sample.objects[object_id]
    layers = sample.layers[window]
    mask = layers[:, :, info.layer] == info.value
    for layer, value in sample.ignore:
        mask &= layers[:, :, layer] != value
    return mask.astype(np.uint8)


@dataclass(frozen=True)
class ObjectWindow:
    """One object with the part of its image that any of its crops can show, stored at ``factor`` times
    the image's resolution (below 1 only where every crop shrinks the object anyway)."""

    image: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) uint8: 1 on the object
    side: int  # the object's longer box side in the image's own pixels
    centre: tuple[float, float]  # the box centre (y, x) in window pixels
    factor: float
    sample_id: str


class ZoomCropSource:
    """Training crops of one object each, at the predictor's ZoomIn scale.

    On creation every object (of at least ``min_object_area`` pixels) of ``source`` is cut out once as an
    :class:`ObjectWindow` that holds all its crops can show, so training never decodes an image again and
    a huge image costs memory in proportion to its objects, not its pixels. ``load(i)`` gives object
    ``i``'s ``crop_size`` (h, w) window, resampled to the ZoomIn scale times ``scale_jitter`` (log-uniform),
    the centre shifted by up to ``shift`` of the window; other objects are background, as in one
    interactive session."""

    def __init__(
        self,
        source: SampleSource,
        crop_size: tuple[int, int],
        zoom: ZoomIn | None = None,
        scale_jitter: tuple[float, float] = (0.8, 1.25),
        shift: float = 0.2,
        min_object_area: int = 1,
    ) -> None:
        self.crop_size = crop_size
        self.zoom = zoom or ZoomIn()
        self.scale_jitter = scale_jitter
        self.shift = shift
        self.min_object_area = min_object_area
        self.windows: list[ObjectWindow] = []
        for index in range(len(source)):
            self.windows += self.cut_windows(source.load(index, np.random.default_rng(index)))

    def cut_windows(self, sample: TrainSample) -> list[ObjectWindow]:
        """The :class:`ObjectWindow` of every object of ``sample`` that is large enough."""
        sample.compute_areas()
        sample.remove_small_objects(max(self.min_object_area, 1))
        boxes = {layer: object_boxes(sample.layers[:, :, layer]) for layer in range(sample.layers.shape[2])}
        height, width = sample.image.shape[:2]
        low, high = self.scale_jitter
        reach = (0.5 + self.shift) * max(self.crop_size)  # output pixels from the box centre to a crop's edge
        windows = []
        for object_id in sample.root_objects:
            info = sample.objects[object_id]
            top, bottom, left, right = boxes[info.layer][info.value]
            side = max(bottom - top + 1, right - left + 1)
            scale = zoom_scale(side, self.zoom)
            cy, cx = 0.5 * (top + bottom), 0.5 * (left + right)
            margin = reach / (scale * low) + 1
            y0, y1 = max(int(cy - margin), 0), min(int(np.ceil(cy + margin)) + 1, height)
            x0, x1 = max(int(cx - margin), 0), min(int(np.ceil(cx + margin)) + 1, width)
            image = sample.image[y0:y1, x0:x1]
            mask = window_mask(sample, object_id, (slice(y0, y1), slice(x0, x1)))
            factor = min(1.0, scale * high)
            if factor < 1.0:
                size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            centre = ((cy - y0) * image.shape[0] / (y1 - y0), (cx - x0) * image.shape[1] / (x1 - x0))
            image = np.ascontiguousarray(image)
            windows.append(ObjectWindow(image, mask, side, centre, factor, sample.sample_id))
        return windows

    def __len__(self) -> int:
        return len(self.windows)

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        window = self.windows[index]
        scale = zoom_scale(window.side, self.zoom) * float(np.exp(rng.uniform(*np.log(self.scale_jitter))))
        scale /= window.factor  # from window pixels
        height, width = self.crop_size
        centre_y = window.centre[0] + rng.uniform(-self.shift, self.shift) * height / scale
        centre_x = window.centre[1] + rng.uniform(-self.shift, self.shift) * width / scale
        # output pixel (u, v) <- window (centre_x + (u - width/2) / scale, centre_y + (v - height/2) / scale)
        matrix = np.array(
            [[scale, 0.0, width / 2 - scale * centre_x], [0.0, scale, height / 2 - scale * centre_y]]
        )
        image = cv2.warpAffine(window.image, matrix, (width, height), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(window.mask, matrix, (width, height), flags=cv2.INTER_NEAREST)
        crop = TrainSample(image, mask.astype(np.int32)[:, :, None], {1: ObjectInfo(layer=0, value=1)}, [],
                           window.sample_id)  # fmt: skip
        crop.compute_areas()
        return crop
