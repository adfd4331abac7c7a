"""Clicks and their tensor encoding for the networks.

A click is a point in image pixel coordinates (row ``y``, column ``x``) that is either positive
(on the object) or negative (background). The networks take all clicks of an image as one
``points`` tensor of shape ``(B, 2N, 3)``: ``N`` positive rows then ``N`` negative rows, each
``(y, x, click_index)``, padded with ``(-1, -1, -1)`` — the layout of the original RITM code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

PAD_ROW = (-1.0, -1.0, -1.0)


@dataclass(frozen=True)
class Click:
    """One user click: ``y``/``x`` in pixels (row, column), ``index`` = order of the click (0-based)."""

    y: float
    x: float
    is_positive: bool
    index: int = 0

    @property
    def coords(self) -> tuple[float, float]:
        return self.y, self.x

    def with_coords(self, y: float, x: float) -> Click:
        return replace(self, y=y, x=x)

    def is_inside(self, shape: tuple[int, ...]) -> bool:
        """True when the click lies on an image of ``shape`` (H, W, ...): finite and in [0, H) x [0, W)."""
        y, x = float(self.y), float(self.x)
        return bool(np.isfinite(y) and np.isfinite(x) and 0 <= y < shape[0] and 0 <= x < shape[1])


def clicks_from_array(rows: Sequence[Sequence[float]]) -> list[Click]:
    """Build clicks from ``(y, x, is_positive)`` rows, numbering them in order."""
    return [Click(y=float(r[0]), x=float(r[1]), is_positive=bool(r[2]), index=i) for i, r in enumerate(rows)]


def clicks_to_points(
    clicks_lists: Sequence[Sequence[Click]],
    max_clicks: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Encode one click list per batch item as a float32 ``(B, 2N, 3)`` points tensor.

    ``N`` is the largest number of positive or negative clicks in any list (at least 1), capped at
    ``max_clicks`` when given; only the first ``max_clicks`` clicks of each list are used.
    """
    lists = [list(c)[:max_clicks] for c in clicks_lists]
    counts = [sum(c.is_positive for c in lst) for lst in lists]
    counts += [len(lst) - n for lst, n in zip(lists, counts, strict=True)]
    n_max = max(counts, default=0)
    if max_clicks is not None:
        n_max = min(n_max, max_clicks)
    n_max = max(1, n_max)

    rows = []
    for lst in lists:
        pos = [(c.y, c.x, float(c.index)) for c in lst if c.is_positive]
        neg = [(c.y, c.x, float(c.index)) for c in lst if not c.is_positive]
        rows.append(pos + [PAD_ROW] * (n_max - len(pos)) + neg + [PAD_ROW] * (n_max - len(neg)))
    return torch.tensor(rows, dtype=torch.float32, device=device).reshape(len(lists), 2 * n_max, 3)
