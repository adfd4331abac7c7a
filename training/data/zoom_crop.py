"""Training crops at the scale the predictor sees an object: the ZoomIn rule.

The predictor (:class:`model.transforms.ZoomIn`) looks at an object through its box expanded
``expansion_ratio`` times (each side at least ``min_crop_size``), resized so that the longer side is
``target_size``. :class:`ZoomCropSource` gives the trainer one object per sample at that same pixel
scale (times a small random factor), in a ``crop_size`` window around it, so a 15-px nucleus is
learnt as the predictor will show it (about 2x) and not at the image's own scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.transforms import ZoomIn
from training.data.dataset import SampleSource
from training.data.sample import TrainSample


def zoom_scale(object_side: float, zoom: ZoomIn) -> float:
    """The factor by which the predictor's ZoomIn resizes an object of longer box side ``object_side``."""
    return zoom.target_size / max(zoom.expansion_ratio * object_side, zoom.min_crop_size)


class ZoomCropSource:
    """Wraps a :class:`~training.data.dataset.SampleSource`: each ``load`` picks one object of the sample
    at random and returns a ``crop_size`` (h, w) window around it, resampled to the ZoomIn scale times
    ``scale_jitter`` (log-uniform), the centre shifted by up to ``shift`` of the window. Only that object
    stays an object; the others are background, as in one interactive session."""

    def __init__(
        self,
        source: SampleSource,
        crop_size: tuple[int, int],
        zoom: ZoomIn | None = None,
        scale_jitter: tuple[float, float] = (0.8, 1.25),
        shift: float = 0.2,
        min_object_area: int = 1,
    ) -> None:
        self.source = source
        self.crop_size = crop_size
        self.zoom = zoom or ZoomIn()
        self.scale_jitter = scale_jitter
        self.shift = shift
        self.min_object_area = min_object_area

    def __len__(self) -> int:
        return len(self.source)

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        sample = self.source.load(index, rng)
        sample.compute_areas()
        sample.remove_small_objects(self.min_object_area)
        roots = sample.root_objects
        if not roots:
            return sample
        object_id = roots[int(rng.integers(len(roots)))]
        ys, xs = np.nonzero(sample.object_mask(object_id) == 1)
        side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        scale = zoom_scale(side, self.zoom) * float(np.exp(rng.uniform(*np.log(self.scale_jitter))))
        height, width = self.crop_size
        centre_y = 0.5 * (ys.min() + ys.max()) + rng.uniform(-self.shift, self.shift) * height / scale
        centre_x = 0.5 * (xs.min() + xs.max()) + rng.uniform(-self.shift, self.shift) * width / scale
        # output pixel (u, v) <- source (centre_x + (u - width/2) / scale, centre_y + (v - height/2) / scale)
        matrix = np.array(
            [[scale, 0.0, width / 2 - scale * centre_x], [0.0, scale, height / 2 - scale * centre_y]]
        )
        image = cv2.warpAffine(sample.image, matrix, (width, height), flags=cv2.INTER_LINEAR)
        planes = [sample.layers[:, :, i].astype(np.float32) for i in range(sample.layers.shape[2])]
        layers = np.stack(
            [cv2.warpAffine(p, matrix, (width, height), flags=cv2.INTER_NEAREST) for p in planes], axis=2
        ).astype(np.int32)
        kept = {object_id: sample.copy().objects[object_id]}
        kept[object_id].parent, kept[object_id].children = None, []
        crop = TrainSample(image, layers, kept, list(sample.ignore), sample.sample_id)
        crop.compute_areas()
        return crop
