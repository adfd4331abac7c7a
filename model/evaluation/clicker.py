"""The simulated user: the click rule of the NoC protocol (RITM / iSegFormer evaluation) and its variants.

Each new click goes to the pixel farthest from the boundary of the larger error region: the
exact Euclidean distance transform is taken of the false-negative and of the false-positive
region (each padded by one background pixel, so the image border counts as boundary), pixels
already clicked are zeroed, and the click is positive when the false-negative maximum is strictly
larger, negative otherwise (ties included). The click lands on the first arg-max in row-major order.
Pixels labelled ``ignore_label`` in the ground truth never count as errors.

Variants, each defined here and nowhere else:

* :class:`Clicker` — the NoC protocol above; the volume app's slice propagation uses it too, with the
  neighbouring slice's mask standing in for the ground truth.
* :func:`training_click` — the rule of iterative training (RITM's ``get_next_points``), meant to differ:
  the 5x5 approximate distance transform, a click drawn at random among the pixels whose distance
  exceeds half the larger maximum (varied clicks for training), and no memory of earlier clicks.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.clicks import Click

IGNORE_LABEL = -1


def error_distance_map(error_mask: np.ndarray, precise: bool = True) -> np.ndarray:
    """L2 distance of each pixel of ``error_mask`` (HxW bool) to the nearest non-error pixel, the outside
    of the image counting as non-error: exact, or with OpenCV's 5x5 mask (``precise=False``, the
    training rule). Returns HxW float32."""
    padded = np.pad(error_mask.astype(np.uint8), 1, mode="constant")
    distances = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE if precise else 5)
    return distances[1:-1, 1:-1]


def error_regions(object_mask: np.ndarray, pred_mask: np.ndarray, valid_mask: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(false_negative, false_positive)`` HxW bool of ``pred_mask`` against ``object_mask``."""
    pred_mask = np.asarray(pred_mask, dtype=bool)
    if pred_mask.shape != object_mask.shape:
        raise ValueError(f"prediction shape {pred_mask.shape} != gt shape {object_mask.shape}")
    false_negative, false_positive = object_mask & ~pred_mask, ~object_mask & pred_mask
    if valid_mask is not None:
        false_negative, false_positive = false_negative & valid_mask, false_positive & valid_mask
    return false_negative, false_positive


def training_click(pred_mask: np.ndarray, object_mask: np.ndarray, rng: np.random.Generator,
                   ) -> Click | None:  # fmt: skip
    """The training variant of the click rule (see the module docstring); None when there is no error.

    ``pred_mask`` / ``object_mask``: HxW bool. The click's ``index`` is 0 (the caller numbers it).
    """
    false_negative, false_positive = error_regions(object_mask, pred_mask)
    fn_dist = error_distance_map(false_negative, precise=False)
    fp_dist = error_distance_map(false_positive, precise=False)
    fn_max, fp_max = float(fn_dist.max()), float(fp_dist.max())
    positive = fn_max > fp_max
    candidates = np.argwhere((fn_dist if positive else fp_dist) > max(fn_max, fp_max) / 2.0)
    if len(candidates) == 0:
        return None
    y, x = candidates[int(rng.integers(len(candidates)))]
    return Click(y=float(y), x=float(x), is_positive=bool(positive), index=0)


class Clicker:
    """Simulated user for one object.

    ``gt_mask``: HxW int array, 1 = object, ``ignore_label`` = ignored, anything else = background.
    Call :meth:`make_next_click` with the current binary prediction; :attr:`clicks` holds the clicks
    so far, numbered in order (``Click.index``).
    """

    def __init__(self, gt_mask: np.ndarray, ignore_label: int = IGNORE_LABEL) -> None:
        if gt_mask.ndim != 2:
            raise ValueError(f"gt_mask must be HxW, got shape {gt_mask.shape}")
        self.object_mask = gt_mask == 1
        self.valid_mask = gt_mask != ignore_label
        self.not_clicked = np.ones(gt_mask.shape, dtype=bool)
        self.clicks: list[Click] = []

    def next_click(self, pred_mask: np.ndarray) -> Click:
        """The click the simulated user would make on ``pred_mask`` (HxW bool), without adding it."""
        false_negative, false_positive = error_regions(self.object_mask, pred_mask, self.valid_mask)

        fn_distance = error_distance_map(false_negative) * self.not_clicked
        fp_distance = error_distance_map(false_positive) * self.not_clicked
        fn_max = fn_distance.max()
        fp_max = fp_distance.max()

        is_positive = bool(fn_max > fp_max)
        distance, peak = (fn_distance, fn_max) if is_positive else (fp_distance, fp_max)
        flat_index = int(np.flatnonzero(distance == peak)[0])
        y, x = divmod(flat_index, distance.shape[1])
        return Click(y=y, x=x, is_positive=is_positive, index=len(self.clicks))

    def add_click(self, click: Click) -> None:
        """Append ``click`` (renumbered to its position) and mark its pixel as clicked."""
        click = Click(y=click.y, x=click.x, is_positive=click.is_positive, index=len(self.clicks))
        self.clicks.append(click)
        self.not_clicked[int(click.y), int(click.x)] = False

    def make_next_click(self, pred_mask: np.ndarray) -> Click:
        """Compute the next click on ``pred_mask`` (HxW bool), add it and return it."""
        click = self.next_click(pred_mask)
        self.add_click(click)
        return click

    def __len__(self) -> int:
        return len(self.clicks)
