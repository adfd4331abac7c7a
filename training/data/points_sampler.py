"""Simulated clicks for training: RITM's ``MultiPointSampler`` (the iSegFormer training sampler).

For one augmented :class:`~training.data.sample.TrainSample` it picks the target (one root object, or
with ``merge_objects_prob`` the union of 2..``max_num_merged_objects`` of them; an empty mask for a
background-only sample) and draws clicks:

* positives: ``1 + k`` points with ``P(k) ~ prob_gamma ** k`` (k < ``max_num_points``), uniformly from
  the object mask eroded (3x3 kernel, ``positive_erode_iters`` times, with ``positive_erode_prob``; kept
  only if more than 10 pixels remain); with ``first_click_center`` the first one is drawn from the
  object's inner part (distance transform above ``max / sfc_inner_k``). With merged objects, each object
  gets its first click and the rest are drawn from the union;
* negatives: ``k`` points (``P(k) ~ prob_gamma ** k``, k <= ``max_num_points``), each from a strategy
  picked with probabilities (background 0.1, other objects 0.4, a border band around the object of
  width ``ceil(expand_ratio * sqrt(area))`` 0.5).

Output rows as :func:`model.clicks.clicks_to_points`: ``max_num_points`` positive rows, then as many
negative rows, each (y, x, index) with index 0 for a centre first click and 100 otherwise, (-1, -1, -1)
padding. Randomness comes only from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np

from training.data.sample import TrainSample

FIRST_CLICK_INDEX = 0
OTHER_CLICK_INDEX = 100
NEGATIVE_STRATEGIES = ("bg", "other", "border")

# A mask with its sampling weight; a list of them is a "weighted union".
Weighted = list[tuple[np.ndarray, float]]


@cache
def geometric_probs(count: int, gamma: float) -> np.ndarray:
    """``[1, gamma, gamma**2, ...]`` (``count`` entries) normalised to sum 1."""
    probs = gamma ** np.arange(count, dtype=np.float64)
    return probs / probs.sum()


def inner_point_candidates(
    mask: np.ndarray, k: float, rng: np.random.Generator, full_prob: float
) -> np.ndarray:
    """(N, 2) (y, x) pixels whose distance to the mask border exceeds ``max / k``."""
    if full_prob > 0 and rng.random() < full_prob:
        return np.argwhere(mask)
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 0)[1:-1, 1:-1]
    if k > 0:
        return np.argwhere(dist > dist.max() / k)
    probs = dist.ravel() / max(dist.sum(), 1e-6)
    return np.array([np.unravel_index(rng.choice(probs.size, p=probs), dist.shape)])


class MultiPointSampler:
    """Picks the training target of a sample and its clicks (see the module docstring)."""

    def __init__(
        self,
        max_num_points: int = 24,
        prob_gamma: float = 0.7,
        expand_ratio: float = 0.1,
        positive_erode_prob: float = 0.9,
        positive_erode_iters: int = 3,
        negative_bg_prob: float = 0.1,
        negative_other_prob: float = 0.4,
        negative_border_prob: float = 0.5,
        merge_objects_prob: float = 0.0,
        max_num_merged_objects: int = 2,
        first_click_center: bool = False,
        only_one_first_click: bool = False,
        sfc_inner_k: float = 1.7,
        sfc_full_inner_prob: float = 0.0,
    ) -> None:
        self.max_num_points = max_num_points
        self.prob_gamma = prob_gamma
        self.expand_ratio = expand_ratio
        self.positive_erode_prob = positive_erode_prob
        self.positive_erode_iters = positive_erode_iters
        self.merge_objects_prob = merge_objects_prob
        self.max_num_merged_objects = (
            max_num_points if max_num_merged_objects == -1 else max_num_merged_objects
        )
        self.first_click_center = first_click_center
        self.only_one_first_click = only_one_first_click
        self.sfc_inner_k = sfc_inner_k
        self.sfc_full_inner_prob = sfc_full_inner_prob
        self.negative_probs = (negative_bg_prob, negative_other_prob, negative_border_prob)
        if not math.isclose(sum(self.negative_probs), 1.0):
            raise ValueError(f"negative strategy probabilities must sum to 1, got {self.negative_probs}")

    # ------------------------------------------------------------------------------------------ public

    def sample(self, sample: TrainSample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> target (H, W) float32 (1 object, 0 background, -1 ignored) and points (2N, 3) float32."""
        if len(sample) == 0:
            background = sample.background_mask()
            target = np.zeros(background.shape, dtype=np.float32)
            positive_masks: list[np.ndarray] = []
            negative_masks = dict.fromkeys(NEGATIVE_STRATEGIES, background)
        else:
            target, positive_masks, merged = self._select_target(sample, rng)
            binary = target > 0
            not_object = ~binary
            if len(sample) <= merged:
                other = not_object
            else:
                other = ~sample.background_mask() & not_object
            negative_masks = {"bg": not_object, "other": other, "border": self.border_mask(binary)}

        positives = self._points_of_masks(positive_masks, rng, with_first_click=self.first_click_center)
        strategies = [
            (negative_masks[name], p)
            for name, p in zip(NEGATIVE_STRATEGIES, self.negative_probs, strict=True)
        ]
        negatives = self._points_of_masks([strategies], rng, negative=True)
        points = np.array(positives + negatives, dtype=np.float32).reshape(2 * self.max_num_points, 3)
        return target.astype(np.float32), points

    # --------------------------------------------------------------------------------------- internals

    def _select_target(
        self, sample: TrainSample, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray], int]:
        roots = sample.root_objects
        if len(roots) > 1 and rng.random() < self.merge_objects_prob:
            most = min(len(roots), self.max_num_merged_objects)
            count = int(rng.integers(2, most + 1))
            chosen = [roots[i] for i in rng.choice(len(roots), size=count, replace=False)]
        else:
            chosen = [roots[int(rng.integers(len(roots)))]]
        target = None
        positives = []
        for object_id in chosen:
            mask = sample.object_mask(object_id)
            target = mask if target is None else np.maximum(target, mask)
            positives.append(self.erode_positive(mask, rng))
        return target, positives, len(chosen)

    def erode_positive(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """With ``positive_erode_prob``: the mask eroded ``positive_erode_iters`` times (3x3), if > 10 px."""
        if rng.random() > self.positive_erode_prob:
            return mask > 0
        eroded = cv2.erode(
            (mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=self.positive_erode_iters
        ).astype(bool)
        return eroded if eroded.sum() > 10 else mask > 0

    def border_mask(self, mask: np.ndarray) -> np.ndarray:
        """Band of width ``ceil(expand_ratio * sqrt(area))`` around ``mask`` (bool), object excluded."""
        radius = int(np.ceil(self.expand_ratio * np.sqrt(mask.sum())))
        expanded = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=radius).astype(
            bool
        )
        return expanded & ~mask

    def _num_points(self, negative: bool, rng: np.random.Generator) -> int:
        if negative:
            return int(
                rng.choice(
                    self.max_num_points + 1, p=geometric_probs(self.max_num_points + 1, self.prob_gamma)
                )
            )
        return 1 + int(
            rng.choice(self.max_num_points, p=geometric_probs(self.max_num_points, self.prob_gamma))
        )

    def _draw(
        self,
        source: np.ndarray | Weighted,
        rng: np.random.Generator,
        negative: bool,
        with_first_click: bool = False,
    ) -> list[list[float]]:
        """Points from one mask or from a weighted union (a mask picked by weight for every point)."""
        count = self._num_points(negative, rng)
        weighted = isinstance(source, list)
        if weighted:
            candidates = [np.argwhere(mask) for mask, _ in source]
            weights = np.array([w for _, w in source], dtype=np.float64)
        else:
            candidates = [np.argwhere(source)]
        points = []
        for j in range(count):
            first = with_first_click and j == 0 and not weighted
            if first:
                pool = inner_point_candidates(source, self.sfc_inner_k, rng, self.sfc_full_inner_prob)
            elif weighted:
                pool = candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]
            else:
                pool = candidates[0]
            if len(pool) > 0:
                y, x = pool[int(rng.integers(len(pool)))]
                points.append([float(y), float(x), float(FIRST_CLICK_INDEX if first else OTHER_CLICK_INDEX)])
        return points

    def _points_of_masks(
        self,
        sources: list[np.ndarray] | list[Weighted],
        rng: np.random.Generator,
        negative: bool = False,
        with_first_click: bool = False,
    ) -> list[list[float]]:
        """``max_num_points`` rows: the points of one source, or with several sources the first point
        of each plus more drawn from their union (RITM's ``_multi_mask_sample_points``)."""
        sources = sources[: self.max_num_points]
        per_source = [self._draw(s, rng, negative, with_first_click) for s in sources]
        per_source = [p for p in per_source if p]
        points: list[list[float]] = []
        if len(per_source) == 1:
            points = per_source[0]
        elif len(per_source) > 1:
            if self.only_one_first_click:
                per_source = per_source[:1]
            points = [p[0] for p in per_source]
            union: Weighted = []
            for source in sources:
                if isinstance(source, list):
                    union += [(mask, w / len(sources)) for mask, w in source]
                else:
                    union.append((source, 1.0 / len(sources)))
            extra = self._draw(union, rng, negative=True)
            room = self.max_num_points - len(points)
            if len(extra) > room:
                extra = [extra[i] for i in rng.choice(len(extra), size=room, replace=False)]
            points += extra
        return points + [[-1.0, -1.0, -1.0]] * (self.max_num_points - len(points))
