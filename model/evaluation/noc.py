"""Number-of-clicks (NoC) evaluation: one object at a time, then dataset-level figures.

The protocol is that of the RITM / iSegFormer evaluation code: the simulated user
(:class:`model.evaluation.clicker.Clicker`) clicks on the current error, the predictor returns
probabilities, the mask is ``probs > threshold`` (0.49), and the loop stops as soon as the IoU reaches
the target (0.90) or after ``max_clicks`` (20). NoC@t is the mean over objects of the first click
count whose IoU reaches ``t``, an object never reaching it counting as ``max_clicks``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from model.clicks import Click
from model.evaluation.clicker import IGNORE_LABEL, Clicker
from model.prediction import ClickPredictor
from model.threshold import DEFAULT_THRESHOLD, probability_mask

DEFAULT_IOU_THRESHOLDS = (0.80, 0.85, 0.90)


@dataclass
class SampleResult:
    """Outcome for one object: the clicks made, the IoU after each (float32, as the original stores
    them) and the wall-clock seconds spent in the predictor (``set_image`` included)."""

    clicks: list[Click]
    ious: np.ndarray
    seconds: float


def mask_iou(gt_mask: np.ndarray, pred_mask: np.ndarray, ignore_label: int = IGNORE_LABEL) -> float:
    """IoU of ``pred_mask`` (HxW bool) with the object ``gt_mask == 1``, pixels equal to ``ignore_label``
    left out. Returns NaN when both are empty."""
    valid = gt_mask != ignore_label
    target = gt_mask == 1
    intersection = np.count_nonzero(pred_mask & target & valid)
    union = np.count_nonzero((pred_mask | target) & valid)
    return intersection / union if union else float("nan")


def object_gt_mask(instances: np.ndarray, object_id: int) -> np.ndarray:
    """HxW int32 ground truth of one object of an instance map (HxW int, 0 = background, ``IGNORE_LABEL``
    = ignored, each positive value one object): 1 = the object, ``IGNORE_LABEL`` = ignored, 0 = the rest."""
    gt = (instances == object_id).astype(np.int32)
    gt[instances == IGNORE_LABEL] = IGNORE_LABEL
    return gt


def check_object(image: np.ndarray, gt_mask: np.ndarray) -> None:
    """ValueError unless ``gt_mask`` (HxW int) matches ``image`` (HxWx3) and holds an object pixel (1)."""
    if gt_mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {gt_mask.shape} does not match image shape {image.shape[:2]}")
    if not np.any(gt_mask == 1):
        raise ValueError("the ground-truth mask has no object pixel (value 1)")


def evaluate_sample(
    predictor: ClickPredictor,
    image: np.ndarray,
    gt_mask: np.ndarray,
    max_clicks: int = 20,
    target_iou: float = 0.90,
    threshold: float = DEFAULT_THRESHOLD,
    min_clicks: int = 1,
) -> SampleResult:
    """Run the simulated user on one object.

    ``image``: HxWx3 uint8; ``gt_mask``: HxW int, 1 = object, -1 = ignored, other = background.
    Stops after the first click whose IoU is ``>= target_iou`` (once ``min_clicks`` are made) or
    after ``max_clicks`` clicks.
    """
    check_object(image, gt_mask)
    clicker = Clicker(gt_mask)
    pred_mask = np.zeros(gt_mask.shape, dtype=bool)
    ious: list[float] = []
    start = time.perf_counter()
    with torch.no_grad():
        predictor.set_image(image)
        state = None  # each click continues from the previous click's prediction
        for click_number in range(1, max_clicks + 1):
            clicker.make_next_click(pred_mask)
            prediction = predictor.predict(list(clicker.clicks), state)
            state = prediction.state
            pred_mask = probability_mask(prediction.prob, threshold)
            iou = mask_iou(gt_mask, pred_mask)
            ious.append(iou)
            if iou >= target_iou and click_number >= min_clicks:
                break
    seconds = time.perf_counter() - start
    # The stop test above uses the float64 IoU; the stored IoUs are float32, exactly as the original
    # (so an IoU of exactly 0.9 stops the loop but does not count for NoC@90 there either).
    return SampleResult(clicks=list(clicker.clicks), ious=np.array(ious, dtype=np.float32), seconds=seconds)


def threshold_key(threshold: float) -> str:
    """``0.85 -> '85'`` (the key used in tables and JSON)."""
    return f"{round(threshold * 100, 2):g}"


@dataclass
class NocSummary:
    """Dataset-level figures. ``noc``/``over_max`` map :func:`threshold_key` to NoC and to the count of
    objects whose NoC equals ``max_clicks`` (the original's ">=20" column: not reached, or reached only
    at the last click). ``mean_iou_per_click[k]`` is the mean IoU after ``k + 1`` clicks, an object that
    stopped early keeping its last IoU."""

    thresholds: tuple[float, ...]
    max_clicks: int
    n_objects: int
    n_clicks: int
    noc: dict[str, float]
    over_max: dict[str, int]
    seconds_per_click: float | None
    mean_iou_per_click: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable form."""
        return {
            "thresholds": list(self.thresholds),
            "max_clicks": self.max_clicks,
            "n_objects": self.n_objects,
            "n_clicks": self.n_clicks,
            "noc": dict(self.noc),
            "over_max": dict(self.over_max),
            "seconds_per_click": self.seconds_per_click,
            "mean_iou_per_click": [float(v) for v in self.mean_iou_per_click],
        }


def clicks_to_reach(ious: np.ndarray, threshold: float, max_clicks: int) -> int:
    """1-based count of clicks until ``ious >= threshold`` first holds, ``max_clicks`` if never."""
    reached = np.asarray(ious) >= threshold
    return int(np.argmax(reached)) + 1 if reached.any() else max_clicks


def compute_noc(
    all_ious: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    max_clicks: int = 20,
    seconds: float | Sequence[float] | None = None,
) -> NocSummary:
    """NoC figures of a dataset from the per-object IoU curves ``all_ious`` (each 1-D, one IoU per click).

    ``seconds``: total evaluation time, or one time per object; gives seconds per click (None if absent).
    """
    if len(all_ious) == 0:
        raise ValueError("no objects to compute NoC from")
    curves = [np.asarray(ious, dtype=np.float32).reshape(-1) for ious in all_ious]
    if any(c.size == 0 or c.size > max_clicks for c in curves):
        raise ValueError(f"every IoU curve must have 1..{max_clicks} entries")

    noc: dict[str, float] = {}
    over_max: dict[str, int] = {}
    for threshold in iou_thresholds:
        counts = np.array([clicks_to_reach(c, threshold, max_clicks) for c in curves])
        noc[threshold_key(threshold)] = float(counts.mean())
        over_max[threshold_key(threshold)] = int(np.count_nonzero(counts == max_clicks))

    padded = np.stack([np.pad(c, (0, max_clicks - c.size), mode="edge") for c in curves]).astype(np.float64)
    n_clicks = sum(c.size for c in curves)
    total_seconds = None if seconds is None else float(np.sum(seconds))
    return NocSummary(
        thresholds=tuple(float(t) for t in iou_thresholds),
        max_clicks=max_clicks,
        n_objects=len(curves),
        n_clicks=n_clicks,
        noc=noc,
        over_max=over_max,
        seconds_per_click=None if total_seconds is None else total_seconds / n_clicks,
        mean_iou_per_click=padded.mean(axis=0),
    )
