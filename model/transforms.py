"""Test-time transforms of the predictor: ZoomIn, LimitLongestSide, PadToMinSize, AddHorizontalFlip.

Each transform works on one network input and its clicks, and undoes itself on the network's output:

* ``apply(image, clicks_lists) -> (image, clicks_lists)``: ``image`` (B, C, H, W) float32 on any device,
  ``clicks_lists`` one list of :class:`~model.clicks.Click` per batch item, coordinates in pixels
  ``(y, x)`` = (row, column) of ``image``;
  plus ``undo``, what the inverse needs about this call (an input size, a box);
* ``inverse(maps, undo) -> maps``: (B', 1, h, w) maps of the transformed input back to the input of ``apply``.

Transforms keep no state between calls. :class:`ZoomIn` is a policy plus a crop: the predictor asks it
for the box of a call (:meth:`ZoomIn.choose_box`, from the previous prediction and the box in use, which
the caller holds in a :class:`~model.prediction.PredictionState`), then crops and pastes back with it.
The arithmetic (ROI boxes, click scaling, bilinear ``align_corners=True`` resizes) is that of the
original RITM/iSegFormer inference transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from model.clicks import Click

Box = tuple[int, int, int, int]  # (rmin, rmax, cmin, cmax), inclusive, in pixels
ClicksLists = list[list[Click]]
Undo = Any  # what one transform's ``inverse`` needs to know about the ``apply`` call it undoes


class Transform:
    """Base class: the identity. A transform holds only its settings: ``apply`` returns what
    ``inverse`` needs to undo that call (``Undo``), so one transform serves any number of calls."""

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists, Undo]:
        return image, clicks_lists, None

    def inverse(self, maps: torch.Tensor, undo: Undo) -> torch.Tensor:
        return maps


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


@dataclass(frozen=True)
class ZoomChoice:
    """ZoomIn's decision for one call: ``crop`` the box this call crops to (None: not zoomed),
    ``kept`` the box in use afterwards (the next call's ``box_in_use``), ``changed`` whether the box in
    use was replaced (the original's ``image_changed``)."""

    crop: Box | None
    kept: Box | None
    changed: bool = False


class ZoomIn:
    """Crop the network input to the object found so far and resize it to ``target_size``.

    From click ``skip_clicks + 1`` on, the object box is the bounding box of the previous prediction
    (``> prob_thresh``) and the positive clicks, scaled by ``expansion_ratio`` about its centre (each
    side at least ``min_crop_size``), clamped to the image. The box in use is replaced only when there is
    none yet, when a positive click falls outside it, or when the new box overlaps it with box IoU below
    ``recompute_thresh_iou``. ``inverse`` resizes the crop's probabilities back and pastes them into a
    zero map of the full size (pixels outside the box get probability 0, as in the original).

    Stateless: the previous prediction and the box in use come in (:meth:`choose_box`) and the box
    to keep goes out (:class:`ZoomChoice`); the caller holds them between calls.

    Deliberate difference from the original: when a call is not zoomed (too few clicks, or an empty
    previous mask) ``inverse`` is the identity even if an older box is in use; the original then
    squeezed the full-image map into that stale box.

    With ``skip_clicks <= 0`` a call without a box whose unzoomed prediction found a small object runs
    again, zoomed (:meth:`needs_recompute`). The original gives that second pass the same previous mask
    as the first; ``recompute_with_first_pass`` gives it the first pass's probabilities instead, so that
    the zoomed pass refines the object the click found rather than segmenting the crop afresh (a network
    shown a person's crop at twice the scale may take his hands for the object). ``recompute_small_only``
    recomputes only objects whose expanded box fits ZoomIn's minimum crop: those a zoom magnifies at least
    ``target_size / min_crop_size`` times, not a person a click on his hands found at full size.
    """

    def __init__(
        self,
        target_size: int = 400,
        skip_clicks: int = 1,
        expansion_ratio: float = 1.4,
        min_crop_size: int = 200,
        recompute_thresh_iou: float = 0.5,
        prob_thresh: float = 0.5,
        recompute_with_first_pass: bool = False,
        recompute_small_only: bool = False,
    ) -> None:
        self.target_size = target_size
        self.skip_clicks = skip_clicks
        self.expansion_ratio = expansion_ratio
        self.min_crop_size = min_crop_size
        self.recompute_thresh_iou = recompute_thresh_iou
        self.prob_thresh = prob_thresh
        self.recompute_with_first_pass = recompute_with_first_pass
        self.recompute_small_only = recompute_small_only

    def choose_box(
        self, prev_probs: torch.Tensor | None, clicks: Sequence[Click], box_in_use: Box | None,
        size: tuple[int, int],
    ) -> ZoomChoice:  # fmt: skip
        """The box of a call with ``clicks`` on an image of ``size`` (H, W), given the previous
        probabilities ``prev_probs`` (1, 1, H, W) (None: no prediction yet) and the box in use."""
        if len(clicks) <= self.skip_clicks:
            return ZoomChoice(None, box_in_use)
        height, width = size
        current = None
        if prev_probs is not None:
            current = object_roi(
                prev_probs, clicks, self.prob_thresh, self.expansion_ratio, self.min_crop_size
            )
        if current is None:
            if self.skip_clicks >= 0:
                return ZoomChoice(None, box_in_use)
            current = (0, height - 1, 0, width - 1)
        if (
            box_in_use is None
            or not positive_clicks_inside(box_in_use, clicks)
            or box_iou(current, box_in_use) < self.recompute_thresh_iou
        ):
            return ZoomChoice(current, current, changed=True)
        return ZoomChoice(box_in_use, box_in_use)

    def apply(
        self, image: torch.Tensor, clicks_lists: ClicksLists, box: Box | None
    ) -> tuple[torch.Tensor, ClicksLists]:
        """Crop ``image`` (1, C, H, W) and its clicks to ``box`` (None: unchanged)."""
        _check_single(image, clicks_lists, "ZoomIn")
        if box is None:
            return image, clicks_lists
        crop = crop_and_resize(image, box, self.target_size)
        return crop, [scale_clicks(clicks_lists[0], box, crop.shape[-2:])]

    def inverse(self, maps: torch.Tensor, box: Box | None, size: tuple[int, int]) -> torch.Tensor:
        """Maps of the crop of ``box`` back to a zero map of the image ``size`` (H, W)."""
        if box is None:
            return maps
        rmin, rmax, cmin, cmax = box
        resized = _resize(maps, (rmax - rmin + 1, cmax - cmin + 1))
        if tuple(resized.shape[-2:]) == tuple(size):
            return resized
        full = resized.new_zeros((*resized.shape[:2], *size))
        full[:, :, rmin : rmax + 1, cmin : cmax + 1] = resized
        return full

    def needs_recompute(self, probs: torch.Tensor, box_in_use: Box | None) -> bool:
        """After an unzoomed prediction ``probs`` (1, 1, H, W) with ``skip_clicks <= 0`` and no box in
        use: True when the object it found is small enough (box IoU with the whole image < 0.5; with
        ``recompute_small_only`` also so small that its crop is the minimum crop, magnified at least
        ``target_size / min_crop_size`` times) that the predictor should run again, zoomed."""
        if box_in_use is not None or self.skip_clicks > 0:
            return False
        found = mask_box(probs[0, 0] > self.prob_thresh)  # object_roi's box without clicks, found once
        if found is None:
            return False
        rmin, rmax, cmin, cmax = found
        if self.recompute_small_only and (
            self.expansion_ratio * max(rmax - rmin + 1, cmax - cmin + 1) > self.min_crop_size
        ):
            return False
        height, width = probs.shape[-2:]
        box = clamp_box(expand_box(found, self.expansion_ratio, self.min_crop_size), height, width)
        return box_iou(box, (0, height - 1, 0, width - 1)) < 0.5


class LimitLongestSide(Transform):
    """Downscale inputs whose longer side exceeds ``max_size`` and, with ``min_size``, enlarge those whose
    longer side is below it (bilinear, align_corners=True); None leaves that side unlimited.

    Unlike the original (a ZoomIn subclass that kept its box after an input that needed no resizing and
    then resized the next map twice), each call is independent: ``inverse`` undoes exactly its ``apply``
    (``undo``: the input size, or None when nothing was resized).
    """

    def __init__(self, max_size: int | None = 800, min_size: int | None = None) -> None:
        if max_size is not None and min_size is not None and min_size > max_size:
            raise ValueError(f"min_size {min_size} is above max_size {max_size}")
        self.max_size = max_size
        self.min_size = min_size

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists, Undo]:
        _check_single(image, clicks_lists, "LimitLongestSide")
        height, width = image.shape[-2:]
        longest = max(height, width)
        if self.max_size is not None and longest > self.max_size:
            target = self.max_size
        elif self.min_size is not None and longest < self.min_size:
            target = self.min_size
        else:
            return image, clicks_lists, None
        box = (0, height - 1, 0, width - 1)
        resized = crop_and_resize(image, box, target)
        return resized, [scale_clicks(clicks_lists[0], box, resized.shape[-2:])], (height, width)

    def inverse(self, maps: torch.Tensor, undo: Undo) -> torch.Tensor:
        return maps if undo is None else _resize(maps, undo)


class PadToMinSize(Transform):
    """Zero-pad the bottom/right of inputs with a side below ``min_size`` (networks with strided
    attention need a few pixels per stage); ``inverse`` crops the padding off (``undo``: the input
    size, or None when nothing was padded). Clicks are unchanged."""

    def __init__(self, min_size: int = 32) -> None:
        self.min_size = min_size

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists, Undo]:
        height, width = image.shape[-2:]
        pad_h, pad_w = max(0, self.min_size - height), max(0, self.min_size - width)
        if not (pad_h or pad_w):
            return image, clicks_lists, None
        return F.pad(image, (0, pad_w, 0, pad_h)), clicks_lists, (height, width)

    def inverse(self, maps: torch.Tensor, undo: Undo) -> torch.Tensor:
        return maps if undo is None else maps[:, :, : undo[0], : undo[1]]


class AddHorizontalFlip(Transform):
    """Test-time augmentation: append the mirrored batch (clicks ``x' = W - 1 - x``); ``inverse``
    averages each map with the mirrored map of its flipped twin (on logits, before the sigmoid)."""

    def apply(self, image: torch.Tensor, clicks_lists: ClicksLists) -> tuple[torch.Tensor, ClicksLists, Undo]:
        if image.ndim != 4:
            raise ValueError(f"AddHorizontalFlip takes (B, C, H, W) input, got {tuple(image.shape)}")
        width = image.shape[3]
        flipped = [[c.with_coords(c.y, width - c.x - 1) for c in clicks] for clicks in clicks_lists]
        return torch.cat((image, image.flip(3)), dim=0), list(clicks_lists) + flipped, None

    def inverse(self, maps: torch.Tensor, undo: Undo = None) -> torch.Tensor:
        if maps.ndim != 4 or maps.shape[0] % 2:
            raise ValueError(f"AddHorizontalFlip.inverse needs an even batch, got {tuple(maps.shape)}")
        half = maps.shape[0] // 2
        return 0.5 * (maps[:half] + maps[half:].flip(3))
