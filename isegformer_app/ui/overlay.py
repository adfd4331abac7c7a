"""Pure-numpy rendering of the annotation overlay (objects + current probability) as RGBA."""

from __future__ import annotations

import cv2
import numpy as np

from isegformer_app.state.document import Document

CURRENT_COLOR = (255, 200, 0)
SOFT_ALPHA = 0.35  # below-threshold probability is shown faintly, scaled by the probability


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool) & mask


def render_overlay(doc: Document, opacity: float) -> np.ndarray:
    """HxWx4 uint8 RGBA (straight alpha): visible objects in z-order, then the current object.

    Objects are filled with their colour at ``opacity``; the selected one gets a white outline.
    The current object: thresholded mask at ``opacity`` in :data:`CURRENT_COLOR` with an outline,
    the rest of the probability faintly (alpha ~ ``prob * opacity * SOFT_ALPHA``).
    """
    h, w = doc.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    a = int(round(255 * max(0.0, min(1.0, opacity))))
    for obj in doc.objects:
        if not obj.visible:
            continue
        rgba[obj.mask] = (*obj.color, a)
        if obj.uid == doc.selected_uid:
            rgba[_outline(obj.mask)] = (255, 255, 255, 255)
    if doc.prob is not None:
        soft = np.clip(doc.prob * (a * SOFT_ALPHA), 0, 255).astype(np.uint8)
        faint = (soft > 0) & (doc.prob < doc.threshold)
        rgba[faint, :3] = CURRENT_COLOR
        rgba[faint, 3] = np.maximum(rgba[faint, 3], soft[faint])
    current = doc.current_mask()
    if current.any():
        rgba[current] = (*CURRENT_COLOR, a)
        rgba[_outline(current)] = (255, 255, 255, 230)
    return rgba
