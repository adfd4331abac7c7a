"""Test-time transforms of the predictor: ZoomIn, LimitLongestSide, PadToMinSize, AddHorizontalFlip.

Each transform works on one network input and its clicks, and undoes itself on the network's output:

* ``apply(image, clicks_lists) -> (image, clicks_lists)``: ``image`` (B, C, H, W) float32 on any device,
  ``clicks_lists`` one list of :class:`~model.clicks.Click` per batch item, coordinates in pixels
  ``(y, x)`` = (row, column) of ``image``;
* ``inverse(maps) -> maps``: (B', 1, h, w) maps of the transformed input back to the input of ``apply``;
* ``get_state()`` / ``set_state(state)`` / ``reset()``: what the next ``apply`` depends on (for undo).

States never alias tensors that are later changed in place, so a saved state stays valid.
The arithmetic (ROI boxes, click scaling, bilinear ``align_corners=True`` resizes) is that of the
original RITM/iSegFormer inference transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from model.clicks import Click

Box = tuple[int, int, int, int]  # (rmin, rmax, cmin, cmax), inclusive, in pixels
ClicksLists = list[list[Click]]


class Transform:
    """Base class: the identity, with no state."""

    image_changed: bool = False

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        return image, clicks_lists

    def transform(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        """The original's name for :meth:`apply`."""
        return self.apply(image, clicks_lists)

    def inverse(self, maps: torch.Tensor) -> torch.Tensor:
        return maps

    def get_state(self) -> Any:
        return None

    def set_state(self, state: Any) -> None:
        pass

    def reset(self) -> None:
        pass


# --- boxes -------------------------------------------------------------------------------------------


def expand_box(box: Box, ratio: float, min_size: float | None = None) -> Box:
    """Scale ``box`` about its centre by ``ratio`` (each side at least ``min_size``); half-even rounding."""
    rmin, rmax, cmin, cmax = box
    rcenter, ccenter = 0.5 * (rmin + rmax), 0.5 * (cmin + cmax)
    height, width = ratio * (rmax - rmin + 1), ratio * (cmax - cmin + 1)
    if min_size is not None:
        height, width = max(height, min_size), max(width, min_size)
    return (
        int(round(rcenter - 0.5 * height)),
        int(round(rcenter + 0.5 * height)),
        int(round(ccenter - 0.5 * width)),
        int(round(ccenter + 0.5 * width)),
    )


def clamp_box(box: Box, height: int, width: int) -> Box:
    """Clip ``box`` to an image of ``height`` x ``width`` pixels."""
    return max(0, box[0]), min(height - 1, box[1]), max(0, box[2]), min(width - 1, box[3])


def _segment_iou(a0: int, a1: int, b0: int, b1: int) -> float:
    intersection = max(0, min(a1, b1) - max(a0, b0) + 1)
    union = max(1e-6, max(a1, b1) - min(a0, b0) + 1)
    return intersection / union


def box_iou(a: Box, b: Box) -> float:
    """The original's box "IoU": product of the row-interval and column-interval IoUs."""
    return _segment_iou(a[0], a[1], b[0], b[1]) * _segment_iou(a[2], a[3], b[2], b[3])


def mask_box(mask: torch.Tensor) -> Box | None:
    """Bounding box of a (H, W) bool mask, or None when it is empty (one small device-to-host copy)."""
    h = mask.shape[0]
    occupied = torch.cat((mask.any(dim=1), mask.any(dim=0))).cpu()
    rows, cols = occupied[:h].nonzero(), occupied[h:].nonzero()
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def object_roi(
    probs: torch.Tensor, clicks: Sequence[Click], prob_thresh: float, expansion_ratio: float, min_size: float
) -> Box | None:
    """ZoomIn's object box: pixels of ``probs`` (1, 1, H, W) above ``prob_thresh`` plus the pixels
    ``(int(y), int(x))`` of the positive clicks, expanded and clamped to the image; None when no pixel
    of ``probs`` is above the threshold (the clicks alone never make a box, as in the original).
    """
    height, width = probs.shape[-2:]
    box = mask_box(probs[0, 0] > prob_thresh)
    if box is None:
        return None
    rmin, rmax, cmin, cmax = box
    for click in clicks:
        if click.is_positive:
            r, c = int(click.y), int(click.x)
            rmin, rmax, cmin, cmax = min(rmin, r), max(rmax, r), min(cmin, c), max(cmax, c)
    return clamp_box(expand_box((rmin, rmax, cmin, cmax), expansion_ratio, min_size), height, width)


def positive_clicks_inside(box: Box, clicks: Sequence[Click]) -> bool:
    """True when every positive click lies in ``box`` (the last row/column excluded, as in the original)."""
    return all(box[0] <= c.y < box[1] and box[2] <= c.x < box[3] for c in clicks if c.is_positive)


def crop_and_resize(image: torch.Tensor, box: Box, target_size: int) -> torch.Tensor:
    """Crop ``box`` out of ``image`` (B, C, H, W) and resize it (bilinear, align_corners=True) so that its
    longer side is ``target_size`` (each side at least 1 px)."""
    rmin, rmax, cmin, cmax = box
    height, width = rmax - rmin + 1, cmax - cmin + 1
    scale = target_size / max(height, width)
    size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
    crop = image[:, :, rmin : rmax + 1, cmin : cmax + 1]
    if size == (height, width):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=True)


def scale_clicks(clicks: Sequence[Click], box: Box, out_size: Sequence[int]) -> list[Click]:
    """Map clicks of the full image into the resized crop of ``box`` (``out_size`` = (h, w)):
    ``y' = h * (y - rmin) / (rmax - rmin + 1)``, likewise for ``x`` (the original's formula)."""
    rmin, rmax, cmin, cmax = box
    sy, sx = out_size[0] / (rmax - rmin + 1), out_size[1] / (cmax - cmin + 1)
    return [c.with_coords(sy * (c.y - rmin), sx * (c.x - cmin)) for c in clicks]


def _resize(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=True)


def _check_single(image: torch.Tensor, clicks_lists: ClicksLists, name: str) -> None:
    if image.ndim != 4 or image.shape[0] != 1 or len(clicks_lists) != 1:
        raise ValueError(f"{name} takes one image (1, C, H, W) with one click list, got {tuple(image.shape)}")


# --- transforms --------------------------------------------------------------------------------------


class ZoomIn(Transform):
    """Crop the network input to the object found so far and resize it to ``target_size``.

    From click ``skip_clicks + 1`` on, the object box is the bounding box of the previous prediction
    (``> prob_thresh``) and the positive clicks, scaled by ``expansion_ratio`` about its centre (each
    side at least ``min_crop_size``), clamped to the image. The box in use is replaced only when there is
    none yet, when a positive click falls outside it, or when the new box overlaps it with box IoU below
    ``recompute_thresh_iou``. ``inverse`` resizes the crop's probabilities back and pastes them into a
    zero map of the full size (pixels outside the box get probability 0, as in the original).

    Deliberate difference from the original: when a call is not zoomed (too few clicks, or an empty
    previous mask) ``inverse`` is the identity even if an older box is stored; the original then
    squeezed the full-image map into that stale box.
    """

    def __init__(
        self,
        target_size: int = 400,
        skip_clicks: int = 1,
        expansion_ratio: float = 1.4,
        min_crop_size: int = 200,
        recompute_thresh_iou: float = 0.5,
        prob_thresh: float = 0.5,
    ) -> None:
        self.target_size = target_size
        self.skip_clicks = skip_clicks
        self.expansion_ratio = expansion_ratio
        self.min_crop_size = min_crop_size
        self.recompute_thresh_iou = recompute_thresh_iou
        self.prob_thresh = prob_thresh
        self.reset()

    @property
    def object_roi(self) -> Box | None:
        """The object box in use, (rmin, rmax, cmin, cmax) inclusive, or None."""
        return self._object_roi

    def reset(self) -> None:
        self._object_roi: Box | None = None
        self._prev_probs: torch.Tensor | None = None  # (1, 1, H, W), the last full-size output
        self._input_size: tuple[int, int] | None = None
        self._applied_roi: Box | None = None  # box used by the current apply/inverse pair
        self.image_changed = False

    def get_state(self) -> Any:
        return self._input_size, self._object_roi, self._prev_probs, self.image_changed

    def set_state(self, state: Any) -> None:
        self._input_size, self._object_roi, self._prev_probs, self.image_changed = state
        self._applied_roi = None

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        _check_single(image, clicks_lists, "ZoomIn")
        self.image_changed = False
        self._applied_roi = None
        clicks = clicks_lists[0]
        if len(clicks) <= self.skip_clicks:
            return image, clicks_lists

        height, width = image.shape[-2:]
        self._input_size = (height, width)
        current = None
        if self._prev_probs is not None:
            current = object_roi(
                self._prev_probs, clicks, self.prob_thresh, self.expansion_ratio, self.min_crop_size
            )
        if current is None:
            if self.skip_clicks >= 0:
                return image, clicks_lists
            current = (0, height - 1, 0, width - 1)

        if (
            self._object_roi is None
            or not positive_clicks_inside(self._object_roi, clicks)
            or box_iou(current, self._object_roi) < self.recompute_thresh_iou
        ):
            self._object_roi = current
            self.image_changed = True
        box = self._applied_roi = self._object_roi
        crop = crop_and_resize(image, box, self.target_size)
        return crop, [scale_clicks(clicks, box, crop.shape[-2:])]

    def inverse(self, maps: torch.Tensor) -> torch.Tensor:
        box = self._applied_roi
        if box is None:
            self._prev_probs = maps
            return maps
        rmin, rmax, cmin, cmax = box
        resized = _resize(maps, (rmax - rmin + 1, cmax - cmin + 1))
        assert self._input_size is not None
        if tuple(resized.shape[-2:]) == self._input_size:
            full = resized
        else:
            full = resized.new_zeros((*resized.shape[:2], *self._input_size))
            full[:, :, rmin : rmax + 1, cmin : cmax + 1] = resized
        self._prev_probs = full
        return full

    def needs_recompute(self) -> bool:
        """After an unzoomed prediction with ``skip_clicks <= 0``: True when the object it found is small
        enough (box IoU with the whole image < 0.5) that the predictor should run again, zoomed."""
        if self._prev_probs is None or self._object_roi is not None or self.skip_clicks > 0:
            return False
        box = object_roi(self._prev_probs, [], self.prob_thresh, self.expansion_ratio, self.min_crop_size)
        if box is None:
            return False
        height, width = self._prev_probs.shape[-2:]
        return box_iou(box, (0, height - 1, 0, width - 1)) < 0.5


class LimitLongestSide(Transform):
    """Downscale inputs whose longer side exceeds ``max_size`` (bilinear, align_corners=True).

    Unlike the original (a ZoomIn subclass that kept its box after an input that needed no resizing and
    then resized the next map twice), each call is independent: ``inverse`` undoes exactly the last
    ``apply``.
    """

    def __init__(self, max_size: int = 800) -> None:
        self.max_size = max_size
        self._input_size: tuple[int, int] | None = None

    def reset(self) -> None:
        self._input_size = None
        self.image_changed = False

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        _check_single(image, clicks_lists, "LimitLongestSide")
        height, width = image.shape[-2:]
        self._input_size = None
        self.image_changed = max(height, width) > self.max_size
        if not self.image_changed:
            return image, clicks_lists
        self._input_size = (height, width)
        box = (0, height - 1, 0, width - 1)
        small = crop_and_resize(image, box, self.max_size)
        return small, [scale_clicks(clicks_lists[0], box, small.shape[-2:])]

    def inverse(self, maps: torch.Tensor) -> torch.Tensor:
        return maps if self._input_size is None else _resize(maps, self._input_size)


class PadToMinSize(Transform):
    """Zero-pad the bottom/right of inputs with a side below ``min_size`` (networks with strided
    attention need a few pixels per stage); ``inverse`` crops the padding off. Clicks are unchanged."""

    def __init__(self, min_size: int = 32) -> None:
        self.min_size = min_size
        self._input_size: tuple[int, int] | None = None

    def reset(self) -> None:
        self._input_size = None

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        height, width = image.shape[-2:]
        pad_h, pad_w = max(0, self.min_size - height), max(0, self.min_size - width)
        self.image_changed = bool(pad_h or pad_w)
        self._input_size = (height, width) if self.image_changed else None
        if not self.image_changed:
            return image, clicks_lists
        return F.pad(image, (0, pad_w, 0, pad_h)), clicks_lists

    def inverse(self, maps: torch.Tensor) -> torch.Tensor:
        if self._input_size is None:
            return maps
        return maps[:, :, : self._input_size[0], : self._input_size[1]]


class AddHorizontalFlip(Transform):
    """Test-time augmentation: append the mirrored batch (clicks ``x' = W - 1 - x``); ``inverse``
    averages each map with the mirrored map of its flipped twin (on logits, before the sigmoid)."""

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists]:
        if image.ndim != 4:
            raise ValueError(f"AddHorizontalFlip takes (B, C, H, W) input, got {tuple(image.shape)}")
        width = image.shape[3]
        flipped = [[c.with_coords(c.y, width - c.x - 1) for c in clicks] for clicks in clicks_lists]
        return torch.cat((image, image.flip(3)), dim=0), list(clicks_lists) + flipped

    def inverse(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.ndim != 4 or maps.shape[0] % 2:
            raise ValueError(f"AddHorizontalFlip.inverse needs an even batch, got {tuple(maps.shape)}")
        half = maps.shape[0] // 2
        return 0.5 * (maps[:half] + maps[half:].flip(3))
