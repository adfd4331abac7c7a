"""Propagate an object's mask from one slice to its neighbours with the click predictor (Qt-free).

For slice ``t`` next to a slice whose mask is ``M`` (HxW bool):

* the first click is positive, at the pixel of ``M`` farthest from its border (distance-transform
  maximum), so it lies well inside the object, which moves little between neighbouring slices;
* models with a previous-mask input (6-channel iSegFormer/RITM, ``predictor.with_prev_mask``) get
  ``M`` as the previous mask with that one click: ``predict([click], PredictionState.from_mask(M))``;
* other predictors get up to ``max_clicks - 1`` more clicks from the NoC protocol's simulated user
  (:class:`model.evaluation.clicker.Clicker`) with ``M`` as a stand-in ground truth: after each pass,
  a click deepest inside the larger error region (positive in a missed part of ``M``, negative in a
  false positive), until the prediction's IoU with ``M`` reaches ``GOOD_IOU``. The model's own image
  evidence decides the boundary.

The automatically placed clicks become the slice's clicks, so the result can be corrected with more.
A range stops at an empty result (the object ended), at the volume's edge, or when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from isegformer_app.volumes import CancelFlag, Volume
from isegformer_app.volumes.progress import ProgressCallback
from model.clicks import Click
from model.evaluation.clicker import Clicker
from model.evaluation.noc import mask_iou
from model.prediction import Prediction, PredictionState
from model.threshold import probability_mask

DEFAULT_MAX_CLICKS = 3
GOOD_IOU = 0.85


@dataclass
class PropagatedSlice:
    """``prediction`` of slice ``index`` for ``clicks``; ``source_mask`` HxW bool it was propagated from."""

    index: int
    clicks: list[Click]
    prediction: Prediction
    source_mask: np.ndarray


def interior_point(mask: np.ndarray) -> tuple[int, int] | None:
    """(y, x) of the pixel of ``mask`` farthest from its border; None for an empty mask."""
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def propagate_mask(predictor, image: np.ndarray, source_mask: np.ndarray, threshold: float,
                   max_clicks: int = DEFAULT_MAX_CLICKS) -> tuple[list[Click], Prediction] | None:
    """Clicks and their prediction for ``image`` from the neighbour's mask; None if it is empty.

    Calls ``predictor.set_image(image)``: the caller restores its own image afterwards.
    """
    point = interior_point(source_mask)
    if point is None:
        return None
    predictor.set_image(image)
    clicks = [Click(float(point[0]), float(point[1]), True, 0)]
    if getattr(predictor, "with_prev_mask", False):
        return clicks, predictor.predict(clicks, PredictionState.from_mask(source_mask))
    prediction = predictor.predict(clicks)
    user = Clicker(source_mask.astype(np.int8))
    user.add_click(clicks[0])
    while len(clicks) < max_clicks:
        pred = probability_mask(prediction.prob, threshold)
        if mask_iou(user.object_mask.astype(np.int8), pred) >= GOOD_IOU:
            break
        clicks.append(user.make_next_click(pred))
        prediction = predictor.predict(clicks, prediction.state)
    return clicks, prediction


def propagate_range(predictor, volume: Volume, axis: str, source_mask: np.ndarray, targets: Iterable[int],
                    threshold: float, on_result: Callable[[PropagatedSlice], None],
                    progress: ProgressCallback | None = None,
                    cancel: CancelFlag | None = None) -> int:  # fmt: skip
    """Propagate slice after slice through ``targets`` (each from the previous result); returns the count.

    ``on_result`` receives each slice as soon as it is done, so a cancel keeps the finished ones.
    """
    targets = list(targets)
    done = 0
    mask = source_mask.astype(bool)
    for position, index in enumerate(targets):
        if progress is not None:
            progress(position / len(targets), f"slice {index} ({position + 1} of {len(targets)})")
        if cancel is not None and cancel.is_set():
            break
        result = propagate_mask(predictor, volume.slice_image(axis, index), mask, threshold)
        if result is None:
            break
        clicks, prediction = result
        on_result(PropagatedSlice(index, clicks, prediction, mask))
        done += 1
        mask = probability_mask(prediction.prob, threshold)
        if not mask.any():
            break
    if progress is not None:
        progress(1.0, f"{done} of {len(targets)} slices")
    return done


def range_targets(start: int, stop: int) -> list[int]:
    """Slice indices from ``start`` (exclusive) to ``stop`` (inclusive), in either direction."""
    step = 1 if stop >= start else -1
    return list(range(start + step, stop + step, step))


@dataclass
class PropagationPlan:
    """What propagating object ``value`` of a ``VolumeDocument`` from its current slice through
    ``targets`` needs, taken on the GUI thread; :meth:`run` may run in a worker thread, :meth:`apply`
    puts each result into the document (GUI thread). :func:`propagate_document` is the two together."""

    doc: object  # the VolumeDocument
    value: int
    axis: str
    source: np.ndarray  # HxW bool: the object on the current slice
    targets: list[int]
    threshold: float

    def run(self, predictor, on_result: Callable[[PropagatedSlice], None],
            progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> int:
        """Predict slice after slice (see :func:`propagate_range`); returns the number done."""
        return propagate_range(predictor, self.doc.volume, self.axis, self.source, self.targets,
                               self.threshold, on_result, progress, cancel)  # fmt: skip

    def apply(self, result: PropagatedSlice) -> None:
        self.doc.apply_propagation(self.value, self.axis, result.index, result.clicks, result.prediction,
                                   result.source_mask)  # fmt: skip


def plan_propagation(doc, stop: int) -> PropagationPlan:
    """Propagate the active (else the selected) object of ``doc`` from the current slice to slice
    ``stop`` of the same view; ValueError (a message for the user) when there is nothing to do."""
    value = doc.active if doc.active is not None else doc.selected_uid
    if value is None:
        raise ValueError("Nothing to propagate: annotate (or select) an object on this slice.")
    source = doc.label_slice() == value
    if not source.any():
        raise ValueError("Nothing to propagate: the object is empty on this slice.")
    targets = range_targets(doc.index, int(min(max(stop, 0), doc.slice_count - 1)))
    if not targets:
        raise ValueError("No slice in that direction.")
    return PropagationPlan(doc, value, doc.axis, source, targets, doc.threshold)


def propagate_document(doc, predictor, stop: int, progress: ProgressCallback | None = None,
                       cancel: CancelFlag | None = None) -> int:
    """Propagate the active (else the selected) object of a ``VolumeDocument`` from the current slice to
    slice ``stop`` of the same view, synchronously; returns the number of slices filled."""
    plan = plan_propagation(doc, stop)
    return plan.run(predictor, plan.apply, progress, cancel)
