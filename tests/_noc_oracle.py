"""The deterministic oracle of ``../shared/reference/noc_oracle_reference.json`` (its ``oracle`` field)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.clicks import Click


def oracle_prediction(
    gt: np.ndarray, rows: np.ndarray, cols: np.ndarray, clicks: Sequence[Click]
) -> np.ndarray:
    """The ground truth inside 60 px disks around positive clicks, dilated by a 7x7 square, minus
    30 px disks around negative clicks wherever they lie outside the ground truth (HxW float32)."""
    positive = np.zeros(gt.shape, dtype=bool)
    negative = np.zeros(gt.shape, dtype=bool)
    for click in clicks:
        squared = (rows - click.y) ** 2 + (cols - click.x) ** 2
        if click.is_positive:
            positive |= squared <= 60**2
        else:
            negative |= squared <= 30**2
    grown = cv2.dilate((gt & positive).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return (grown & ~(negative & ~gt)).astype(np.float32)
