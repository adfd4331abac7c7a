"""Click maps: the two extra input channels (positive, negative) made from a points tensor.

Two encodings, as in the original ``DistMaps``:

* disks (``use_disks=True``, the iSegFormer/RITM default): 1 where ``d² <= r²`` to any click of that
  sign, else 0, with ``d`` in network-input pixels;
* distance maps: ``tanh(2 * min_k sqrt(((row - y_k) / r)² + ((col - x_k) / r)²))``, 1 far from clicks.

The computation is separable (row and column offsets are broadcast, never a full
``(points, rows, cols, 2)`` grid), runs on any device and needs no compiled extension.
"""

from __future__ import annotations

import torch

_FAR = 1e6  # squared distance given to padding rows, as in the original


def click_maps(
    points: torch.Tensor, height: int, width: int, radius: float = 5.0, use_disks: bool = True
) -> torch.Tensor:
    """Return ``(B, 2, height, width)`` float32 maps for ``points`` of shape ``(B, 2N, 3)``.

    Channel 0 encodes the ``N`` positive rows, channel 1 the ``N`` negative rows; rows whose
    ``max(y, x) < 0`` are padding and ignored.
    """
    assert points.ndim == 3 and points.shape[2] == 3, f"points must be (B, 2N, 3), got {tuple(points.shape)}"
    batch, rows2, _ = points.shape
    n_points = rows2 // 2
    pts = points[..., :2].to(torch.float32)
    invalid = pts.amax(dim=2) < 0  # (B, 2N)

    grid_rows = torch.arange(height, dtype=torch.float32, device=points.device)
    grid_cols = torch.arange(width, dtype=torch.float32, device=points.device)
    dy = grid_rows.view(1, 1, height) - pts[..., 0:1]  # (B, 2N, H)
    dx = grid_cols.view(1, 1, width) - pts[..., 1:2]  # (B, 2N, W)
    if not use_disks:
        dy = dy / radius
        dx = dx / radius
    dy2 = (dy * dy).masked_fill(invalid.unsqueeze(-1), _FAR)
    dx2 = dx * dx
    dist2 = dy2.unsqueeze(-1) + dx2.unsqueeze(-2)  # (B, 2N, H, W)
    dist2 = dist2.view(batch, 2, n_points, height, width).amin(dim=2)

    if use_disks:
        return (dist2 <= radius * radius).to(torch.float32)
    return torch.tanh(torch.sqrt(dist2) * 2)
