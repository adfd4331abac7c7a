"""GrabCut engine: OpenCV's colour-GMM graph cut, seeded from the clicks.

Positive clicks become sure-foreground disks, negative clicks sure-background disks (a disk never
reaches a click of the other sign). The previous mask (or, at the first click, a disk around the
positive clicks) is the "probably foreground" region; everything outside a box around the positive
clicks and the previous mask is sure background. Only components connected to a positive click are
kept. GrabCut runs re-seeded and single-threaded, so results are deterministic.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.engines.base import ClickEngine, View, WorkClicks, disk_mask


def box_mask(shape: tuple[int, int], region: np.ndarray, margin: float) -> np.ndarray:
    """Bool hxw map of the bounding box of ``region`` (bool hxw) grown by ``margin`` px on each side."""
    ys, xs = np.nonzero(region)
    out = np.zeros(shape, bool)
    if len(ys) == 0:
        return out
    m = int(round(margin))
    y0, y1 = max(0, ys.min() - m), min(shape[0], ys.max() + m + 1)
    x0, x1 = max(0, xs.min() - m), min(shape[1], xs.max() + m + 1)
    out[y0:y1, x0:x1] = True
    return out


def keep_clicked_components(fg: np.ndarray, clicks: WorkClicks) -> np.ndarray:
    """Keep only the 8-connected components of bool ``fg`` that contain a positive click."""
    count, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    if count <= 1:
        return fg
    hit = labels[clicks.ys[clicks.positive], clicks.xs[clicks.positive]]
    hit = hit[hit > 0]
    return np.isin(labels, hit)


def paint_click_disks(labels: np.ndarray, clicks: WorkClicks, radius: float) -> None:
    """Draw sure-foreground (positive) / sure-background (negative) disks into GC_* ``labels``.

    A disk never reaches a click of the other sign: its radius is at most ``radius`` and less than
    half the distance to the nearest such click (down to the clicked pixel alone). Clicks are drawn
    in order, so a later click wins on its own pixel.
    """
    points = np.stack([clicks.ys, clicks.xs], axis=1).astype(np.float64)
    for i, (y, x, positive) in enumerate(
        zip(clicks.ys.tolist(), clicks.xs.tolist(), clicks.positive.tolist(), strict=True)
    ):
        others = points[clicks.positive != positive]
        r = radius
        if len(others):
            r = min(r, 0.5 * float(np.hypot(*(others - points[i]).T).min()) - 0.5)
        cv2.circle(labels, (x, y), max(0, int(np.floor(r))), int(cv2.GC_FGD if positive else cv2.GC_BGD), -1)


def run_grabcut(
    image: np.ndarray, labels: np.ndarray, clicks: WorkClicks, iterations: int, seed: int = 0
) -> np.ndarray:
    """GrabCut on the box of non-sure-background ``labels`` (hxw uint8 GC_* values, changed in place).

    ``image``: hxwx3 uint8. Returns hxw float32 {0, 1}: the foreground components holding a
    positive click. Deterministic: OpenCV's RNG is seeded with ``seed`` and GrabCut runs on one
    thread.
    """
    foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not foreground.any():
        return foreground.astype(np.float32)
    ys, xs = np.nonzero(~(labels == cv2.GC_BGD))
    y0, y1 = max(0, ys.min() - 1), min(labels.shape[0], ys.max() + 2)
    x0, x1 = max(0, xs.min() - 1), min(labels.shape[1], xs.max() + 2)
    crop = np.ascontiguousarray(labels[y0:y1, x0:x1])
    crop_bg = (crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)
    if crop_bg.sum() < 2 or (~crop_bg).sum() < 2 or iterations < 1:  # GrabCut needs both classes
        return keep_clicked_components(foreground, clicks).astype(np.float32)
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    crop_image = np.ascontiguousarray(image[y0:y1, x0:x1])
    # OpenCV's parallel k-means sums in a schedule-dependent order: one thread keeps results exact.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        cv2.setRNGSeed(seed)
        cv2.grabCut(crop_image, crop, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    finally:
        cv2.setNumThreads(threads)
    fg = np.zeros(labels.shape, bool)
    fg[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return keep_clicked_components(fg, clicks).astype(np.float32)


class GrabCutEngine(ClickEngine):
    """Click-seeded GrabCut (see module docstring).

    Radii and margins are fractions of the working image's longest side.
    """

    name = "grabcut"

    def __init__(
        self,
        work_size: int = 192,
        iterations: int = 2,
        click_radius: float = 0.015,
        first_click_radius: float = 0.12,
        roi_margin: float = 0.2,
        seed: int = 0,
        **view_options: float,
    ) -> None:
        super().__init__(work_size, **view_options)
        self.iterations = iterations
        self.click_radius = click_radius
        self.first_click_radius = first_click_radius
        self.roi_margin = roi_margin
        self.seed = seed

    def _segment(self, view: View, clicks: WorkClicks, prev: np.ndarray | None) -> np.ndarray:
        shape = view.image.shape[:2]
        size = max(shape)
        pos_y, pos_x = clicks.ys[clicks.positive], clicks.xs[clicks.positive]
        prev_fg = None if prev is None else prev > 0.5
        if prev_fg is None or not prev_fg.any():
            prev_fg = disk_mask(shape, pos_y, pos_x, self.first_click_radius * size)

        labels = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        labels[prev_fg] = cv2.GC_PR_FGD
        roi = box_mask(shape, prev_fg | disk_mask(shape, pos_y, pos_x, 1), self.roi_margin * size)
        labels[~roi] = cv2.GC_BGD
        paint_click_disks(labels, clicks, max(1.0, self.click_radius * size))
        return run_grabcut(view.image, labels, clicks, self.iterations, self.seed)
