"""Pure-numpy rendering of the annotation overlay (objects + current probability) as RGBA.

Pixels are written as packed 32-bit RGBA words (one store per pixel instead of four), and the faint
probability layer is blended with whole-array operations (no boolean gathers), so a soft
probability map costs about as much as a binary one.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from model.threshold import probability_mask

CURRENT_COLOR = (255, 200, 0)
SOFT_ALPHA = 0.35  # below-threshold probability is shown faintly, scaled by the probability
OUTLINE_KERNEL = np.ones((3, 3), np.uint8)


class OverlaySource(Protocol):
    """What :func:`render_overlay` reads (an image Document or the slice view of a VolumeDocument)."""

    shape: tuple[int, int]
    objects: list
    selected_uid: int | None
    prob: np.ndarray | None
    threshold: float

    def current_mask(self) -> np.ndarray: ...


def pack_rgba(r: int, g: int, b: int, a: int) -> np.uint32:
    """One RGBA8888 pixel as the uint32 whose bytes in memory are (r, g, b, a), on any byte order."""
    return np.array([r, g, b, a], np.uint8).view(np.uint32)[0]


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    return cv2.morphologyEx(m, cv2.MORPH_GRADIENT, OUTLINE_KERNEL).view(bool) & mask


MAX_OUTLINE_SEGMENTS = 20000  # beyond this (noisy masks) the outline is drawn as pixels instead


def _runs(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Unit pixel edges on line ``fixed`` from ``moving`` to ``moving + 1``, merged into runs:
    Kx3 (fixed, start, end)."""
    order = np.lexsort((moving, fixed))
    f, m = fixed[order], moving[order]
    new_run = np.ones(f.size, bool)
    new_run[1:] = (f[1:] != f[:-1]) | (m[1:] != m[:-1] + 1)
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], f.size) - 1
    return np.stack([f[starts], m[starts], m[ends] + 1], axis=1)


def outline_segments(mask: np.ndarray, max_segments: int = MAX_OUTLINE_SEGMENTS) -> np.ndarray | None:
    """The border of ``mask`` along the pixel (voxel) edges: Kx4 float (x0, y0, x1, y1) segments in
    pixel-corner coordinates (pixel (y, x) covers [x, x+1] x [y, y+1]), collinear edges merged, for an
    outline drawn in screen pixels that lies exactly on the edge of the filled pixels at any zoom;
    None when it would take more than ``max_segments`` segments (noisy masks).

    The border pixels come from OpenCV's border following (every mask pixel with a background pixel
    beside it lies on an outer or a hole border), so the cost follows the border, not the image size.
    """
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 4))
    h, w = m.shape
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    flat = np.unique(points[:, 1] * w + points[:, 0])
    ys, xs = flat // w, flat % w

    def background(dy: int, dx: int) -> np.ndarray:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        out = np.ones(ys.size, bool)
        out[inside] = m[ny[inside], nx[inside]] == 0
        return out

    top, bottom, left, right = background(-1, 0), background(1, 0), background(0, -1), background(0, 1)
    rows = _runs(np.concatenate([ys[top], ys[bottom] + 1]), np.concatenate([xs[top], xs[bottom]]))
    cols = _runs(np.concatenate([xs[left], xs[right] + 1]), np.concatenate([ys[left], ys[right]]))
    if len(rows) + len(cols) > max_segments:
        return None
    horizontal = np.stack([rows[:, 1], rows[:, 0], rows[:, 2], rows[:, 0]], axis=1)
    vertical = np.stack([cols[:, 0], cols[:, 1], cols[:, 0], cols[:, 2]], axis=1)
    return np.concatenate([horizontal, vertical]).astype(np.float64)


def nothing_to_draw(doc: OverlaySource, current: np.ndarray | None = None) -> bool:
    """True when the overlay would be fully transparent: no visible object, no probability, no current
    mask (a freshly opened image: its 4096² overlay is not rendered just to be empty). ``current``:
    ``doc.current_mask()`` if the caller has it already (one full-size pass per redraw, not three)."""
    if doc.prob is not None or any(o.visible for o in doc.objects):
        return False
    return not (doc.current_mask() if current is None else current).any()


def outlined_masks(doc: OverlaySource, current: np.ndarray | None = None) -> list[np.ndarray]:
    """The masks that get an outline: the selected (visible) object's, then the current object's."""
    masks = [o.mask for o in doc.objects if o.visible and o.uid == doc.selected_uid]
    current = doc.current_mask() if current is None else current
    return masks + [current] if current.any() else masks


def render_overlay(doc: OverlaySource, opacity: float, outlines: bool = True,
                   current: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """HxWx4 uint8 RGBA (straight alpha): visible objects in z-order, then the current object.

    Objects are filled with their colour at ``opacity``; the selected one gets a white outline.
    The current object: thresholded mask at ``opacity`` in :data:`CURRENT_COLOR` with an outline,
    the rest of the probability faintly (alpha ~ ``prob * opacity * SOFT_ALPHA``). ``outlines`` False:
    no outline pixels (the canvas draws them in screen pixels, see :func:`outline_polygons`).
    ``current``: ``doc.current_mask()`` if the caller has it already.
    """
    h, w = doc.shape
    pixels = np.zeros((h, w), np.uint32)  # packed RGBA; viewed below as HxWx4 uint8
    rgba = pixels.view(np.uint8).reshape(h, w, 4)
    a = int(round(255 * max(0.0, min(1.0, opacity))))
    white = pack_rgba(255, 255, 255, 255)
    for obj in doc.objects:
        if not obj.visible:
            continue
        mask = obj.mask
        pixels[mask] = pack_rgba(*obj.color, a)
        if outlines and obj.uid == doc.selected_uid:
            pixels[_outline(mask)] = white
    prob = doc.prob
    if prob is not None:
        soft = np.clip(prob * (a * SOFT_ALPHA), 0, 255).astype(np.uint8)
        faint = (soft > 0) & ~probability_mask(prob, doc.threshold)  # below or at the threshold
        alpha = np.maximum(rgba[..., 3], soft)
        np.copyto(pixels, pack_rgba(*CURRENT_COLOR, 0), where=faint)  # colour, alpha set just below
        np.copyto(rgba[..., 3], alpha, where=faint)
    current = doc.current_mask() if current is None else current
    if current.any():
        pixels[current] = pack_rgba(*CURRENT_COLOR, a)
        if outlines:
            pixels[_outline(current)] = pack_rgba(255, 255, 255, 230)
    return rgba
