"""Square dilation and erosion as two 1-d max filters equal the 2-d max filter."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.morphology import dilate, erode


def test_separable_filters_equal_the_square_max_pool() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 1, 41, 37, generator=generator) > 0.93).float()
    for radius in (1, 4, 15):
        size = 2 * radius + 1
        assert torch.equal(dilate(mask, radius), F.max_pool2d(mask, size, 1, radius))
        assert torch.equal(erode(mask, radius), -F.max_pool2d(-mask, size, 1, radius))
    assert torch.equal(dilate(mask, 0), mask)


def test_a_point_grows_into_a_square_and_a_square_shrinks() -> None:
    mask = torch.zeros(1, 1, 20, 20)
    mask[0, 0, 10, 10] = 1
    grown = dilate(mask, 3)
    assert grown.sum() == 49 and grown[0, 0, 7:14, 7:14].min() == 1
    assert torch.equal(erode(grown, 3), mask)
    # the image's outside does not count: a full image stays full
    assert torch.equal(erode(torch.ones(1, 1, 5, 5), 2), torch.ones(1, 1, 5, 5))
