"""What a second click the NoC protocol never makes does to a good first mask.

The protocol's clicks always go where the mask is wrong, so it never shows a failure users meet in their
first minutes: a second click that *agrees* with the mask (a positive on another part of the object, a
negative on a neighbour that is already outside the mask) and still shrinks or loses the object. On the
bundled photo a click on the man's hands found the man, and either second click left only his hands.

For one object, after the protocol's first click (:class:`~model.evaluation.clicker.Clicker`):

* :func:`second_positive_click` — a positive on another part of the object: the object pixel farthest
  from the first click among those at least a quarter of the object's largest depth inside it;
* :func:`nearby_negative_click` — a negative next to the object: the background pixel outside the first
  mask, 2–10 % of the image diagonal away from the object, nearest to the first click.

Each is added to the first click on its own (continuing from the first prediction's state); the IoU
after it, against the IoU after the first click alone, is what :func:`evaluate_second_clicks` returns.
A network that reads clicks as a user means them never loses much IoU to either.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.clicks import Click
from model.evaluation.clicker import IGNORE_LABEL, Clicker, error_distance_map
from model.evaluation.noc import check_object, mask_iou
from model.prediction import ClickPredictor
from model.threshold import DEFAULT_THRESHOLD, probability_mask

MIN_DEPTH_SHARE = 0.25  # the second positive lies at least this share of the object's largest depth inside
MIN_SECOND_DISTANCE = 3.0  # pixels; a farthest deep pixel nearer the first click: no second click
NEGATIVE_BAND = (0.02, 0.10)  # the nearby negative's distance to the object, in image diagonals


def second_positive_click(gt_mask: np.ndarray, first: Click, index: int = 1) -> Click | None:
    """A positive click on another part of the object of ``gt_mask`` (HxW int, 1 = object): the object
    pixel farthest from ``first`` whose depth inside the object (exact distance to its boundary) is at
    least :data:`MIN_DEPTH_SHARE` of the largest depth; None when that pixel is within
    :data:`MIN_SECOND_DISTANCE` pixels of ``first`` (a small or round object offers no other part)."""
    depth = error_distance_map(gt_mask == 1)
    deep = depth >= MIN_DEPTH_SHARE * float(depth.max())
    rows, cols = np.nonzero(deep & (gt_mask == 1))
    if rows.size == 0:
        return None
    distances = np.hypot(rows - first.y, cols - first.x)
    best = int(np.argmax(distances))
    if distances[best] < MIN_SECOND_DISTANCE:
        return None
    return Click(y=float(rows[best]), x=float(cols[best]), is_positive=True, index=index)


def nearby_negative_click(gt_mask: np.ndarray, first_mask: np.ndarray, first: Click, index: int = 1,
                          ) -> Click | None:  # fmt: skip
    """A negative click next to the object of ``gt_mask`` that agrees with ``first_mask`` (HxW bool, the
    mask after the first click): the background pixel (not object, not ignored) outside ``first_mask`` whose
    distance to the object lies in :data:`NEGATIVE_BAND` (image diagonals), nearest to ``first``; None
    when no pixel qualifies."""
    height, width = gt_mask.shape
    diagonal = float(np.hypot(height, width))
    # exact distance of each pixel to the nearest object pixel (no padding: the border is not object)
    to_object = cv2.distanceTransform((gt_mask != 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    background = (gt_mask != 1) & (gt_mask != IGNORE_LABEL) & ~np.asarray(first_mask, dtype=bool)
    near, far = NEGATIVE_BAND[0] * diagonal, NEGATIVE_BAND[1] * diagonal
    rows, cols = np.nonzero(background & (to_object >= near) & (to_object <= far))
    if rows.size == 0:
        return None
    best = int(np.argmin(np.hypot(rows - first.y, cols - first.x)))
    return Click(y=float(rows[best]), x=float(cols[best]), is_positive=False, index=index)


@dataclass(frozen=True)
class SecondClickResult:
    """IoUs of one object: after the first click, after it plus the second positive, after it plus the
    nearby negative (None where that click does not exist for the object)."""

    first_iou: float
    positive_iou: float | None
    negative_iou: float | None
    first: Click
    positive: Click | None
    negative: Click | None


def evaluate_second_clicks(
    predictor: ClickPredictor, image: np.ndarray, gt_mask: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> SecondClickResult:
    """The first click of the protocol, then each agreeing second click on its own (module docstring)."""
    check_object(image, gt_mask)
    predictor.set_image(image)
    first = Clicker(gt_mask).next_click(np.zeros(gt_mask.shape, dtype=bool))
    first_prediction = predictor.predict([first])
    first_mask = probability_mask(first_prediction.prob, threshold)

    def iou_with(second: Click | None) -> float | None:
        if second is None:
            return None
        prediction = predictor.predict([first, second], first_prediction.state)
        return mask_iou(gt_mask, probability_mask(prediction.prob, threshold))

    positive = second_positive_click(gt_mask, first)
    negative = nearby_negative_click(gt_mask, first_mask, first)
    return SecondClickResult(
        first_iou=mask_iou(gt_mask, first_mask),
        positive_iou=iou_with(positive),
        negative_iou=iou_with(negative),
        first=first,
        positive=positive,
        negative=negative,
    )
