"""Hybrid engine: the geodesic segmentation seeds GrabCut.

The geodesic split (:class:`GeodesicEngine`) says which pixels are probably foreground/background;
pixels the geodesic distances put clearly on the background side (``D_fg - D_bg > sure_margin``)
and everything outside a box around the geodesic foreground are sure background; disks at the
clicks are sure labels. GrabCut's colour models then move the boundary onto image edges.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.engines.base import View, WorkClicks, disk_mask
from model.engines.geodesic import GeodesicEngine
from model.engines.grabcut import box_mask, paint_click_disks, run_grabcut


class GeoGrabCutEngine(GeodesicEngine):
    """Geodesic split refined by GrabCut (see module docstring).

    ``sure_margin`` is in the geodesic units (longest side x mean step cost); ``roi_margin`` and
    ``click_radius`` are fractions of the working image's longest side.
    """

    name = "geo_grabcut"

    def __init__(
        self,
        work_size: int = 192,
        iterations: int = 2,
        sure_margin: float = 0.2,
        roi_margin: float = 0.1,
        click_radius: float = 0.015,
        **geodesic_options: float,
    ) -> None:
        super().__init__(work_size=work_size, **geodesic_options)
        self.iterations = iterations
        self.sure_margin = sure_margin
        self.roi_margin = roi_margin
        self.click_radius = click_radius

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
        return run_grabcut(view.image, labels, clicks, self.iterations)
