"""Click encoding: points layout and click maps against direct per-pixel formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.click_maps import click_maps
from model.clicks import Click, clicks_from_array, clicks_to_points


def _direct_maps(points: np.ndarray, h: int, w: int, r: float, disks: bool) -> np.ndarray:
    """Per-pixel loop formula of the original DistMaps, for comparison."""
    out = np.zeros((points.shape[0], 2, h, w), np.float32)
    n = points.shape[1] // 2
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    for b in range(points.shape[0]):
        for sign in range(2):
            best = np.full((h, w), 1e6)
            for y, x, _ in points[b, sign * n : (sign + 1) * n]:
                if max(y, x) < 0:
                    continue
                dy, dx = (rows - y), (cols - x)
                if not disks:
                    dy, dx = dy / r, dx / r
                best = np.minimum(best, dy * dy + dx * dx)
            out[b, sign] = (best <= r * r) if disks else np.tanh(2 * np.sqrt(best))
    return out


def test_points_layout_matches_original_padding():
    clicks = [Click(10, 20, True, 0), Click(5, 6, False, 1), Click(7, 8, True, 2)]
    pts = clicks_to_points([clicks])
    assert pts.shape == (1, 4, 3)
    np.testing.assert_array_equal(
        pts[0].numpy(), [[10, 20, 0], [7, 8, 2], [5, 6, 1], [-1, -1, -1]]
    )


def test_points_batch_pads_to_longest_and_limits_clicks():
    a = clicks_from_array([(1, 1, 1), (2, 2, 1), (3, 3, 1)])
    b = clicks_from_array([(4, 4, 0)])
    pts = clicks_to_points([a, b])
    assert pts.shape == (2, 6, 3)
    assert (pts[1, :3] == -1).all() and pts[1, 3].tolist() == [4, 4, 0]
    limited = clicks_to_points([a], max_clicks=2)
    assert limited.shape == (1, 4, 3) and limited[0, :2, 0].tolist() == [1, 2]


def test_zero_clicks_give_one_padding_row_per_sign():
    pts = clicks_to_points([[]])
    assert pts.shape == (1, 2, 3) and (pts == -1).all()
    maps = click_maps(pts, 8, 9)
    assert maps.shape == (1, 2, 8, 9) and maps.sum() == 0


@pytest.mark.parametrize("disks", [True, False])
def test_click_maps_equal_direct_formula(disks: bool):
    rng = np.random.default_rng(0)
    pts = np.full((2, 8, 3), -1, np.float32)
    pts[:, :3, :2] = rng.uniform(-3, 40, (2, 3, 2))
    pts[:, 4:6, :2] = rng.uniform(0, 40, (2, 2, 2))
    pts[..., 2] = np.where(pts[..., 0] >= 0, 0, -1)
    radius = 5.0 if disks else 13.0
    ours = click_maps(torch.from_numpy(pts), 33, 41, radius, disks).numpy()
    ref = _direct_maps(pts, 33, 41, radius, disks)
    if disks:
        np.testing.assert_array_equal(ours, ref)
        assert ours[:, 0].sum() > 0 and ours[:, 1].sum() > 0
    else:
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_disk_boundary_is_inclusive_with_radius_five():
    pts = clicks_to_points([[Click(10, 10, True)]])
    maps = click_maps(pts, 21, 21, radius=5)
    pos = maps[0, 0].numpy()
    assert pos[10, 15] == 1 and pos[13, 14] == 1  # d² = 25 exactly
    assert pos[10, 16] == 0 and pos[14, 14] == 0  # d² = 36, 32
    assert pos.sum() == 81  # lattice points with d² <= 25
