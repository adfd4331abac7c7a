"""The one place a probability map becomes an object mask.

The predictor, the NoC protocol, training's click simulation and the app (images and volumes) all
use :func:`probability_mask`, so a pixel at exactly the threshold is background everywhere, as in the
original RITM/iSegFormer evaluation (``pred_probs > pred_thr``).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.49  # the original evaluation's pred_thr


def probability_mask(probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """HxW bool mask of an HxW float probability map: ``probs > threshold``."""
    return np.asarray(probs) > threshold
