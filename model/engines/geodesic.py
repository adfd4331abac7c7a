"""Geodesic engine: each pixel goes to the nearer seed set along image-contrast-weighted paths.

The view (Lab colour, lightly smoothed) becomes an 8-connected grid graph whose edge cost is
``length * (alpha + contrast / mean_contrast)``. Shortest-path (Dijkstra, scipy.sparse.csgraph)
distances are taken from the positive clicks (``D_fg``) and from the background seeds
(``D_bg`` = negative clicks, and the view's border with an extra offset so the very first click
already has a background). Probability = ``sigmoid((D_bg - D_fg) / temperature)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from model.engines.base import ClickEngine, View, WorkClicks

_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def lab_features(rgb: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """hxwx3 uint8 RGB -> hxwx3 float32 Lab (L in [0, 100]) after a Gaussian blur of ``sigma`` px."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    if sigma > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), sigma)
    return lab


def grid_graph(features: np.ndarray, alpha: float, power: float = 1.0) -> csr_matrix:
    """hxwxC float features -> (h*w, h*w) CSR graph of symmetric 8-neighbour edge costs.

    Cost of an edge = ``step_length * (alpha + (|f_p - f_q| / mean |f_p - f_q|) ** power)`` (> 0).
    Every node gets exactly 8 entries (neighbours off the grid become self-loops), so the CSR
    arrays are built directly without sorting.
    """
    height, width = features.shape[:2]
    n = height * width
    padded = np.pad(features, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    indices = np.empty((height, width, 8), np.int32)
    contrast = np.empty((height, width, 8), np.float32)
    lengths = np.empty(8, np.float32)
    for k, (dy, dx) in enumerate(_NEIGHBOURS):
        ny, nx = rows + dy, cols + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        indices[:, :, k] = np.where(
            valid, np.clip(ny, 0, height - 1) * width + np.clip(nx, 0, width - 1), rows * width + cols
        )
        shifted = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        contrast[:, :, k] = np.where(valid, np.sqrt(((features - shifted) ** 2).sum(axis=2)), 0.0)
        lengths[k] = np.hypot(dy, dx)
    real = contrast > 0
    scale = float(contrast[real].mean()) + 1e-6 if real.any() else 1.0
    cost = lengths * (alpha + (contrast / scale) ** power)
    indptr = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    return csr_matrix((cost.reshape(-1).astype(np.float64), indices.reshape(-1), indptr), shape=(n, n))


def geodesic_distance(graph: csr_matrix, seeds: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance hxw float32 from the nearest of the flat seed indices (inf where there is no seed)."""
    if len(seeds) == 0:
        return np.full(shape, np.inf, np.float32)
    dist = dijkstra(graph, directed=True, indices=np.unique(seeds), min_only=True)
    return dist.reshape(shape).astype(np.float32)


def border_indices(shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of the outermost pixel ring of an hxw grid."""
    ring = np.zeros(shape, bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return np.flatnonzero(ring)


@dataclass(frozen=True)
class GeodesicData:
    """Per-view graph, distance from the view border (hxw, geodesic units) and the unit length."""

    graph: csr_matrix
    border_distance: np.ndarray
    unit: float


class GeodesicEngine(ClickEngine):
    """Nearest-seed geodesic segmentation (see module docstring).

    ``alpha``: cost of a flat step relative to a mean-contrast step; ``contrast_power``: exponent
    on the relative contrast (above 1 makes strong edges harder to cross); ``border_offset``: extra cost
    of reaching the view border; ``temperature``: softness of the map. Distances are in units of
    the view's longest side times the mean step cost.
    """

    name = "geodesic"

    def __init__(
        self,
        work_size: int = 256,
        alpha: float = 0.3,
        border_offset: float = 0.1,
        temperature: float = 0.01,
        smoothing: float = 1.0,
        contrast_power: float = 1.0,
        **view_options: float,
    ) -> None:
        super().__init__(work_size, **view_options)
        self.contrast_power = contrast_power
        self.alpha = alpha
        self.border_offset = border_offset
        self.temperature = temperature
        self.smoothing = smoothing

    def _prepare(self, work_image: np.ndarray) -> GeodesicData:
        shape = work_image.shape[:2]
        graph = grid_graph(lab_features(work_image, self.smoothing), self.alpha, self.contrast_power)
        unit = float(max(shape)) * (self.alpha + 1.0)
        border = geodesic_distance(graph, border_indices(shape), shape) / unit
        return GeodesicData(graph, border, unit)

    def distances(self, view: View, clicks: WorkClicks) -> tuple[np.ndarray, np.ndarray]:
        """(D_fg, D_bg): hxw float32 geodesic distances of the view to the positive / background seeds."""
        data: GeodesicData = view.data
        shape = view.image.shape[:2]
        flat = clicks.ys * shape[1] + clicks.xs
        d_fg = geodesic_distance(data.graph, flat[clicks.positive], shape) / data.unit
        d_bg = data.border_distance + self.border_offset
        if (~clicks.positive).any():
            d_neg = geodesic_distance(data.graph, flat[~clicks.positive], shape) / data.unit
            d_bg = np.minimum(d_bg, d_neg)
        return d_fg, d_bg

    def _segment(self, view: View, clicks: WorkClicks, prev: np.ndarray | None) -> np.ndarray:
        d_fg, d_bg = self.distances(view, clicks)
        margin = np.clip((d_bg - d_fg) / self.temperature, -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-margin))).astype(np.float32)
