"""A network's click takes what is under it and never loses the object far from where it was made.

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

A network can also ignore a click: the shipped one left a fifth to a quarter of the evaluation's clicks
on the wrong side of the threshold on their own pixel (a thin part, a blob of the wrong colour), and the
simulated user, like a person, then clicks the same spot again. :func:`obey_clicks` makes every click's
pixel take its label, with a disk that stays inside the region the map got wrong (the classical engines
honour their clicks in their own way: :func:`model.engines.base.honour_clicks`).

Restored pixels take the previous map's probability, so the map the next click continues from stays
as unsure as the network's own maps. ``isegformer-eval --local-edits`` measures both rules (README,
"Clicks never lose the object", "A click takes what is under it"). The app applies them to the
networks' clicks (a setting in the Model menu, on by default); the classical engines have rules of
their own (``ClickEngine.own_click_rules``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.clicks import Click
from model.engines.base import paint_click_disk
from model.prediction import Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD, probability_mask

FORGETTING_SHARE = 0.5  # removals away from the click of at least this share of the mask are put back
# An ignored click's disk: this share of the click's distance to the nearest pixel the map labels as the
# click does (the disk stays inside the region the map got wrong; 1.0 was measured too: README) ...
OBEYING_SHARE = 0.5
# ... and at most this share of the map's longer side (a click far from the mask, or on an empty map)
OBEYING_MAX_RADIUS = 0.02


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


def obey_clicks(
    prediction: Prediction,
    clicks: Sequence[Click],
    threshold: float = DEFAULT_THRESHOLD,
    share: float = OBEYING_SHARE,
    max_radius: float = OBEYING_MAX_RADIUS,
) -> tuple[Prediction, int]:
    """``prediction`` in which every click's own pixel takes the click's label, and the number of clicks
    the map had put on the wrong side of ``threshold``.

    Around each such click (in order, so a later click wins on its own pixel) a disk becomes 1.0 for a
    positive click, 0.0 for a negative one: its radius is ``share`` of the click's distance to the nearest
    pixel the map labels as the click does (or to the image's edge), at most ``max_radius`` of the map's
    longer side and under half the distance to any click of the other sign
    (:func:`~model.engines.base.paint_click_disk`); the clicked pixel at least. Returns ``(prediction,
    0)`` when every click is obeyed already; never changes ``prediction``.
    """
    if not share > 0:
        raise ValueError(f"share must be positive, got {share}")
    prob = prediction.prob
    inside = [c for c in clicks if c.is_inside(prob.shape)]
    limit = max(1.0, max_radius * max(prob.shape))
    window = int(np.ceil(limit / share)) + 1  # a distance beyond it gives a radius beyond the limit
    out = prob
    wrong_clicks = 0
    for index, click in enumerate(inside):
        row, column = int(click.y), int(click.x)
        if (out[row, column] > threshold) == click.is_positive:
            continue
        if out is prob:
            out = prob.copy()
        wrong_clicks += 1
        y0, x0 = max(0, row - window), max(0, column - window)
        near = out[y0 : row + window + 1, x0 : column + window + 1]
        wrong = (near <= threshold) if click.is_positive else (near > threshold)
        # distances to the nearest rightly labelled pixel; the window's border counts as one
        distance = cv2.distanceTransform(np.pad(wrong, 1).astype(np.uint8), cv2.DIST_L2, 5)
        radius = min(share * float(distance[row - y0 + 1, column - x0 + 1]), limit)
        paint_click_disk(out, inside, index, radius)
    if out is prob:
        return prediction, 0
    return Prediction.of(out, prediction.state.zoom_box), wrong_clicks


class LocalEdits:
    """A :class:`~model.prediction.ClickPredictor` whose clicks take what is under them
    (:func:`obey_clicks` after every prediction) and never lose the object far from them
    (:func:`keep_untouched_parts` after every prediction that continues from a previous mask, first).
    ``restored``: the pixels the last prediction got back; ``obeyed``: the clicks it made obey."""

    def __init__(
        self, predictor, threshold: float = DEFAULT_THRESHOLD, min_share: float = FORGETTING_SHARE
    ) -> None:
        self.predictor = predictor
        self.threshold = threshold
        self.min_share = min_share
        self.name = getattr(predictor, "name", type(predictor).__name__)
        self.restored = 0
        self.obeyed = 0

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        prediction = self.predictor.predict(clicks, state)
        self.restored = self.obeyed = 0
        if not clicks or (state is not None and state.prob.shape != prediction.prob.shape):
            return prediction  # nothing clicked, or a wrong-size answer for the caller to report
        if state is not None:
            prediction, self.restored = keep_untouched_parts(
                state, prediction, clicks[-1], self.threshold, self.min_share
            )
        prediction, self.obeyed = obey_clicks(prediction, clicks, self.threshold)
        return prediction
