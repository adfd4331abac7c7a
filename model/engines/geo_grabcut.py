"""Hybrid engine: the geodesic segmentation seeds GrabCut.

The geodesic split (:class:`GeodesicEngine`) says which pixels are probably foreground/background;
pixels the geodesic distances put clearly on the background side (``D_fg - D_bg > sure_margin``)
and everything outside a box around the geodesic foreground are sure background; disks at the
clicks are sure labels. GrabCut's colour models then move the boundary onto image edges.

A negative seed teaches GrabCut the background's colours everywhere. Where the object shares them
(a nodule and the vessel leaking out of it, a nucleus and its touching neighbour), a negative click
on the leak can take the whole object away: IoU 0.84 -> 0.01 on a lung nodule. So once there are
negative clicks, GrabCut answers twice when it must: if it dropped at least ``collapse_share`` of the
object's *core* (pixels of the previous mask geodesically nearer the positive clicks than any
background seed by ``keep_margin``), it runs again with the core as sure foreground. A negative
click still removes what is near it (the leak); it no longer removes the object far from it.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.engines.base import View, WorkClicks, disk_mask
from model.engines.geodesic import GeodesicEngine
from model.engines.grabcut import box_mask, paint_click_disks, run_grabcut


class GeoGrabCutEngine(GeodesicEngine):
    """Geodesic split refined by GrabCut (see module docstring).

    ``sure_margin`` and ``keep_margin`` are in the geodesic units (longest side x mean step cost);
    ``roi_margin`` and ``click_radius`` are fractions of the working image's longest side;
    ``collapse_share``: the share of the object's core GrabCut may drop, once there are negative clicks,
    before it runs again with the core kept (above 1: never).
    """

    name = "geo_grabcut"

    def __init__(
        self,
        work_size: int = 192,
        iterations: int = 2,
        sure_margin: float = 0.2,
        roi_margin: float = 0.1,
        click_radius: float = 0.015,
        keep_margin: float = 0.05,
        collapse_share: float = 0.5,
        **geodesic_options: float,
    ) -> None:
        super().__init__(work_size=work_size, **geodesic_options)
        self.iterations = iterations
        self.sure_margin = sure_margin
        self.roi_margin = roi_margin
        self.click_radius = click_radius
        self.keep_margin = keep_margin
        self.collapse_share = collapse_share

    def _segment(self, view: View, clicks: WorkClicks, prev: np.ndarray | None) -> np.ndarray:
        shape = view.image.shape[:2]
        size = max(shape)
        d_fg, d_bg = self.distances(view, clicks)
        geo_fg = d_fg < d_bg
        labels = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        labels[geo_fg] = cv2.GC_PR_FGD
        labels[d_fg - d_bg > self.sure_margin] = cv2.GC_BGD
        pos = disk_mask(shape, clicks.ys[clicks.positive], clicks.xs[clicks.positive], 1)
        labels[~box_mask(shape, geo_fg | pos, self.roi_margin * size)] = cv2.GC_BGD
        paint_click_disks(labels, clicks, max(1.0, self.click_radius * size))
        core = self._object_core(d_fg, d_bg, clicks, prev)
        if core is None:
            return run_grabcut(view.image, labels, clicks, self.iterations)
        seeds = labels.copy()  # run_grabcut changes its labels in place
        answer = run_grabcut(view.image, labels, clicks, self.iterations)
        if np.count_nonzero(core & (answer < 0.5)) < self.collapse_share * np.count_nonzero(core):
            return answer
        seeds[core & (seeds != cv2.GC_BGD)] = cv2.GC_FGD
        return run_grabcut(view.image, seeds, clicks, self.iterations)

    def _object_core(
        self, d_fg: np.ndarray, d_bg: np.ndarray, clicks: WorkClicks, prev: np.ndarray | None
    ) -> np.ndarray | None:
        """Bool hxw: the previous mask's pixels nearer the positive clicks than any background seed by
        ``keep_margin`` (None before the first negative click, without a previous mask, or empty)."""
        if prev is None or clicks.positive.all():
            return None
        core = (prev > 0.5) & (d_bg - d_fg > self.keep_margin)
        return core if core.any() else None
