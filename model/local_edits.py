"""A network's click never loses the object far from where it was made.

A network answers every click with a whole new map, so a click can take away parts of the object far
from where it was made: on the bundled photo a click on the man's hands selects him, and a negative
click on the woman behind him (already outside the mask) leaves only his hands. After each click that
continues from a previous mask, :func:`keep_untouched_parts` puts back the pixels the new mask lost away
from the click when they are at least :data:`FORGETTING_SHARE` of the previous mask: the network has lost
the object rather than corrected it. It borrows the removal half of FocalClick's Progressive Merge (Chen
et al., CVPR 2022), which keeps only the changed region under the click:

- a positive click that brings its own pixel into the mask keeps the network's whole answer (pixels
  added and removed anywhere: that is how the network redraws the object's extent; undoing that cost
  0.9 NoC@90 on the photo evaluation sets);
- after any other click, what the network adds stays; what it removes in the connected changed region
  under a negative click that took its own pixel out stays removed; the rest it removed is put back if
  it is at least half of the previous mask. Smaller removals away from the click are the network's
  corrections (putting those back too cost 0.5 NoC@90 on 148 nuclei, 17.07 against 16.56).

Restored pixels take the previous map's probability, so the map the next click continues from stays
as unsure as the network's own maps. ``isegformer-eval --local-edits`` measures the rule (README,
"Clicks never lose the object"). The app applies it to the networks' clicks (a setting in the
Model menu, on by default); the classical engines have rules of their own
(``ClickEngine.own_click_rules``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.clicks import Click
from model.prediction import Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD, probability_mask

FORGETTING_SHARE = 0.5  # removals away from the click of at least this share of the mask are put back


def click_pixel(click: Click, shape: tuple[int, int]) -> tuple[int, int]:
    """(row, column) of the pixel under ``click`` in an image of ``shape``, clamped into it."""
    row = min(max(int(np.floor(click.y)), 0), shape[0] - 1)
    column = min(max(int(np.floor(click.x)), 0), shape[1] - 1)
    return row, column


def changed_region_at(changed: np.ndarray, row: int, column: int) -> np.ndarray:
    """HxW bool: the 8-connected region of ``changed`` (HxW bool) holding pixel (row, column), which it
    must hold (a flood fill: its cost follows the region, not the image)."""
    region = np.zeros((changed.shape[0] + 2, changed.shape[1] + 2), np.uint8)
    flags = 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    cv2.floodFill(changed.astype(np.uint8), region, (column, row), 1, 0, 0, flags)
    return region[1:-1, 1:-1].astype(bool)


def keep_untouched_parts(
    previous: PredictionState,
    prediction: Prediction,
    click: Click,
    threshold: float = DEFAULT_THRESHOLD,
    min_share: float = FORGETTING_SHARE,
) -> tuple[Prediction, int]:
    """``prediction`` with the pixels it removed from ``previous`` away from ``click`` put back when they
    are at least ``min_share`` of the previous mask (0: always), and the number of pixels put back.

    ``previous``: the state the prediction continued from; ``click``: the click it answered (the last
    one); both maps HxW at the image's resolution. Returns ``(prediction, 0)`` when nothing changes.
    """
    shape = prediction.prob.shape
    previous.check_shape(shape)
    before = probability_mask(previous.prob, threshold)
    after = probability_mask(prediction.prob, threshold)
    removed = before & ~after
    if not removed.any():
        return prediction, 0
    row, column = click_pixel(click, shape)
    pixel_changed = bool(before[row, column] != after[row, column])
    if click.is_positive and pixel_changed and after[row, column]:
        return prediction, 0  # the click added its own region: the network redraws the object
    if not click.is_positive and pixel_changed and not after[row, column]:
        # the negative click removed its own region: that connected part of the change is its to remove
        removed &= ~changed_region_at(before ^ after, row, column)
    restored = int(np.count_nonzero(removed))
    if not restored or restored < min_share * np.count_nonzero(before):
        return prediction, 0
    prob = np.where(removed, previous.prob, prediction.prob).astype(np.float32, copy=False)
    return Prediction.of(prob, prediction.state.zoom_box), restored


class LocalEdits:
    """A :class:`~model.prediction.ClickPredictor` whose clicks never lose the object far from them
    (:func:`keep_untouched_parts` after every prediction that continues from a previous mask).
    ``restored``: the pixels the last prediction got back."""

    def __init__(
        self, predictor, threshold: float = DEFAULT_THRESHOLD, min_share: float = FORGETTING_SHARE
    ) -> None:
        self.predictor = predictor
        self.threshold = threshold
        self.min_share = min_share
        self.name = getattr(predictor, "name", type(predictor).__name__)
        self.restored = 0

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        prediction = self.predictor.predict(clicks, state)
        self.restored = 0
        if state is None or not clicks or state.prob.shape != prediction.prob.shape:
            return prediction  # a new object, or a wrong-size answer for the caller to report
        prediction, self.restored = keep_untouched_parts(
            state, prediction, clicks[-1], self.threshold, self.min_share
        )
        return prediction
