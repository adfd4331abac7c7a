"""The one place a probability map becomes an object mask.

The predictor, the NoC protocol, training's click simulation and the app (images and volumes) all
use :func:`probability_mask`, so a pixel at exactly the threshold is background everywhere, as in the
original RITM/iSegFormer evaluation (``pred_probs > pred_thr``).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.49  # the original evaluation's pred_thr


def checked_threshold(value: float) -> float:
    """``value`` as a threshold (a float strictly between 0 and 1); ValueError otherwise."""
    threshold = float(value)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"a threshold is between 0 and 1, not {value!r}")
    return threshold


def probability_mask(probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """HxW bool mask of an HxW float probability map: ``probs > threshold``."""
    return np.asarray(probs) > threshold
