"""A network's click takes what is under it and never loses the object far from it (``model.local_edits``):
the rules on maps made by hand, the predictor wrapper, the shipped network, and the app's window with a
predictor that forgets the object."""

from __future__ import annotations

import numpy as np
import pytest
from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted
from PIL import Image
from PySide6.QtCore import Qt

from model.clicks import Click
from model.local_edits import (
    FORGETTING_SHARE,
    OBEYING_MAX_RADIUS,
    OBEYING_SHARE,
    LocalEdits,
    click_pixel,
    keep_untouched_parts,
    obey_clicks,
)
from model.prediction import Prediction, PredictionState
from model.threshold import probability_mask

SHAPE = (60, 80)


def blob(y0: int, y1: int, x0: int, x1: int, value: float) -> np.ndarray:
    prob = np.full(SHAPE, 0.1, np.float32)
    prob[y0:y1, x0:x1] = value
    return prob


def two_parts(left: float = 0.7, right: float = 0.8) -> np.ndarray:
    """A previous map with two separate parts of the object (a left and a right block)."""
    prob = blob(10, 30, 5, 25, left)
    prob[10:30, 50:70] = right
    return prob


def test_a_negative_click_outside_the_mask_takes_nothing_away_and_keeps_additions() -> None:
    previous = PredictionState(two_parts())
    new = blob(10, 30, 50, 70, 0.9)  # the left part lost, the right one kept ...
    new[40:50, 5:15] = 0.95  # ... and a part added
    result, restored = keep_untouched_parts(previous, Prediction.of(new, (1, 2, 3, 4)), Click(45, 40, False))
    assert restored == 400
    mask = probability_mask(result.prob)
    assert mask[10:30, 5:25].all() and mask[10:30, 50:70].all() and mask[40:50, 5:15].all()
    assert mask.sum() == 400 + 400 + 100
    # the restored part keeps the previous map's (unsure) probability, the rest is the new map's
    np.testing.assert_array_equal(result.prob[10:30, 5:25], np.float32(0.7))
    np.testing.assert_array_equal(result.prob[10:30, 50:70], np.float32(0.9))
    assert result.state.prob is result.prob and result.state.zoom_box == (1, 2, 3, 4)


def test_a_negative_click_removes_the_region_under_it_and_nothing_else() -> None:
    previous = PredictionState(two_parts())
    new = np.full(SHAPE, 0.1, np.float32)  # both parts removed; the click is on the right one
    result, restored = keep_untouched_parts(previous, Prediction.of(new), Click(20.4, 60.7, False))
    assert restored == 400
    mask = probability_mask(result.prob)
    assert mask[10:30, 5:25].all() and not mask[10:30, 50:70].any()
    assert mask.sum() == 400
    # without the rule the click takes both parts
    assert not probability_mask(new).any()


def test_a_positive_click_that_adds_its_region_keeps_the_networks_whole_answer() -> None:
    previous = PredictionState(two_parts())
    new = blob(40, 55, 30, 45, 0.9)  # adds the clicked region, drops both parts
    prediction = Prediction.of(new)
    assert keep_untouched_parts(previous, prediction, Click(47, 37, True)) == (prediction, 0)


def test_a_positive_click_inside_the_mask_takes_nothing_away() -> None:
    previous = PredictionState(two_parts())
    new = blob(10, 30, 5, 25, 0.9)  # the click on the left part; the network forgets the right one
    result, restored = keep_untouched_parts(previous, Prediction.of(new), Click(20, 15, True))
    mask = probability_mask(result.prob)
    assert mask[10:30, 5:25].all() and mask[10:30, 50:70].all() and mask.sum() == 800 and restored == 400
    # a positive click whose own pixel the network dropped takes nothing away either
    dropped = blob(10, 30, 50, 70, 0.9)
    result, restored = keep_untouched_parts(previous, Prediction.of(dropped), Click(20, 15, True))
    assert probability_mask(result.prob).sum() == 800 and restored == 400


def test_a_removal_of_less_than_half_the_mask_is_the_networks_correction() -> None:
    """Removals away from the click are put back when they are at least FORGETTING_SHARE (half) of the
    previous mask: less is the network correcting the mask, and stays removed unless min_share is 0."""
    assert FORGETTING_SHARE == 0.5
    previous = PredictionState(two_parts())
    new = two_parts()
    new[10:30, 5:24] = 0.1  # 380 of the 800 px taken away, far from the click: a correction
    kept, restored = keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False))
    assert restored == 0 and probability_mask(kept.prob).sum() == 420
    new[10:30, 24] = 0.1  # 400 of 800: the object lost
    kept, restored = keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False))
    assert restored == 400 and probability_mask(kept.prob).sum() == 800
    new[10:30, 5:24] = 0.7  # 20 px again: put back only when every removal is
    assert keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False))[1] == 0
    assert keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False), min_share=0)[1] == 20


def test_the_rule_judges_at_the_given_threshold_and_checks_shapes() -> None:
    previous = PredictionState(two_parts(left=0.45))  # the left part is below 0.49, above 0.4
    new = np.full(SHAPE, 0.1, np.float32)
    at_default, restored = keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False))
    assert probability_mask(at_default.prob).sum() == restored == 400  # only the right part was in the mask
    at_low, restored = keep_untouched_parts(previous, Prediction.of(new), Click(45, 40, False), threshold=0.4)
    assert probability_mask(at_low.prob, 0.4).sum() == restored == 800
    with pytest.raises(ValueError, match="shape"):
        small = PredictionState(np.zeros((10, 10), np.float32))
        keep_untouched_parts(small, Prediction.of(new), Click(1, 1, False))


def test_clicks_on_the_border_and_outside_map_to_the_nearest_pixel() -> None:
    assert click_pixel(Click(59.9, 79.99, True), SHAPE) == (59, 79)
    assert click_pixel(Click(60.0, 80.0, True), SHAPE) == (59, 79)
    assert click_pixel(Click(-0.5, 3.7, False), SHAPE) == (0, 3)


def test_the_wrapper_applies_the_rule_only_when_a_previous_mask_is_given() -> None:
    inner = DiskPredictor(radius=6, only_last=True)
    local = LocalEdits(inner)
    local.set_image(np.zeros((*SHAPE, 3), np.uint8))
    first = local.predict([Click(20, 20, True)])  # a new object: the predictor's own answer
    np.testing.assert_array_equal(first.prob, inner.predict([Click(20, 20, True)]).prob)
    assert inner.states[0] is None and probability_mask(first.prob).sum() == 113  # a disk of radius 6
    clicks = [Click(20, 20, True, 0), Click(40, 60, False, 1)]
    kept = local.predict(clicks, first.state)
    forgotten = inner.predict(clicks, first.state)
    assert not probability_mask(forgotten.prob).any()  # the fake forgets the object ...
    np.testing.assert_array_equal(probability_mask(kept.prob), probability_mask(first.prob))  # ... kept
    assert local.restored == 113
    local.predict([Click(20, 20, True)])
    assert local.restored == 0  # each prediction says what it put back
    other_size = PredictionState(np.ones((10, 10), np.float32))
    answer = local.predict(clicks, other_size)  # not the rule's to judge: the caller reports the size
    assert answer.prob.shape == SHAPE and local.restored == 0
    assert local.name == inner.name


def disk_pixels(radius: int) -> int:
    """Pixels of the disk ``paint_click_disk`` paints with an integer ``radius``."""
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return int(np.count_nonzero(yy**2 + xx**2 <= radius**2))


def test_an_ignored_click_takes_a_disk_that_stays_inside_what_the_map_got_wrong() -> None:
    """A negative click on a 10-px band the map keeps: its distance to the nearest background pixel
    is 5, so OBEYING_SHARE (half) of it, 2 px, is the radius (13 px); nothing else changes."""
    assert OBEYING_SHARE == 0.5 and OBEYING_MAX_RADIUS == 0.02
    prob = np.full((400, 400), 0.1, np.float32)
    prob[100:110, 100:300] = 0.9
    prediction = Prediction.of(prob, (0, 399, 0, 399))
    result, wrong = obey_clicks(prediction, [Click(105, 120, True, 0), Click(104, 200, False, 1)])
    assert wrong == 1 and result.prob[104, 200] == 0.0
    changed = result.prob != prob
    assert changed.sum() == disk_pixels(2) == 13 and (result.prob[changed] == 0.0).all()
    assert changed[102:107, 198:203].sum() == 13  # around the click, inside the band
    assert result.state.zoom_box == (0, 399, 0, 399) and result.state.prob is result.prob
    np.testing.assert_array_equal(prediction.prob, prob)  # the network's map is left as it was


def test_an_ignored_click_far_from_everything_takes_at_most_the_largest_disk() -> None:
    """On an empty map a positive click's distance to anything labelled object is the image's edge, 200
    px: the disk stops at OBEYING_MAX_RADIUS of the longer side (8 px of 400), and under half the
    distance to a click of the other sign."""
    empty = Prediction.of(np.zeros((400, 400), np.float32))
    alone, wrong = obey_clicks(empty, [Click(200, 200, True)])
    assert wrong == 1 and np.count_nonzero(alone.prob == 1.0) == disk_pixels(8) == 197
    near_negative, _ = obey_clicks(empty, [Click(200, 200, True, 0), Click(200, 206, False, 1)])
    assert np.count_nonzero(near_negative.prob == 1.0) == disk_pixels(2)  # 0.5 * 6 - 0.5 = 2.5 px
    small, _ = obey_clicks(Prediction.of(np.zeros((20, 30), np.float32)), [Click(10, 10, True)])
    assert np.count_nonzero(small.prob == 1.0) == disk_pixels(1) == 5  # 2 % of 30 px: at least 1 px


def test_obeyed_clicks_and_clicks_outside_the_map_change_nothing() -> None:
    prob = blob(10, 30, 5, 25, 0.9)
    prediction = Prediction.of(prob)
    clicks = [Click(20, 15, True, 0), Click(45, 40, False, 1), Click(80, 500, True, 2)]
    clicks.append(Click(-3, 4, False, 3))  # outside, as the last two
    assert obey_clicks(prediction, clicks) == (prediction, 0)
    # judged at the given threshold: at 0.95 the positive click's pixel is not in the mask
    raised, wrong = obey_clicks(prediction, clicks, threshold=0.95)
    assert wrong == 1 and raised.prob[20, 15] == 1.0
    with pytest.raises(ValueError, match="share"):
        obey_clicks(prediction, clicks, share=0.0)


def test_the_wrapper_makes_the_first_click_and_every_later_one_obey() -> None:
    """A network that answers nothing to a click: the wrapper's map holds every positive click's disk
    and no negative click's pixel, from the first click on; ``obeyed`` counts what it had to enforce."""

    class Deaf:
        name = "deaf"

        def set_image(self, image: np.ndarray) -> None:
            self.shape = image.shape[:2]

        def predict(self, clicks, state=None) -> Prediction:
            return Prediction.of(np.zeros(self.shape, np.float32))

    local = LocalEdits(Deaf())
    local.set_image(np.zeros((400, 400, 3), np.uint8))
    first = local.predict([Click(100, 100, True, 0)])
    assert local.obeyed == 1 and probability_mask(first.prob).sum() == 197
    clicks = [Click(100, 100, True, 0), Click(300, 300, True, 1), Click(100, 104, False, 2)]
    later = local.predict(clicks, first.state)
    mask = probability_mask(later.prob)
    assert local.obeyed == 2 and mask[100, 100] and mask[300, 300] and not mask[100, 104]


def test_with_the_shipped_network_every_click_takes_what_is_under_it() -> None:
    """The shipped network on a thin VOC chair: the simulated user's clicks, made on the errors of the
    map as the app shows it, are each left on the wrong side by the network alone at least once; through
    the wrapper every click of the list holds its label after every prediction."""
    from model.checkpoint import load_checkpoint
    from model.evaluation.clicker import Clicker
    from model.evaluation.samples import voc_samples
    from model.predictor import interactive_predictor
    from resources import bundled_model

    chair = voc_samples()[2]
    network = load_checkpoint(bundled_model(), "cpu")
    predictor = interactive_predictor(network, device="cpu")
    local = LocalEdits(predictor)
    local.set_image(chair.image)
    clicker = Clicker(chair.gt_mask())
    mask, state, enforced = np.zeros(chair.mask.shape, bool), None, 0
    for _ in range(6):
        clicker.make_next_click(mask)
        clicks = list(clicker.clicks)
        prediction = local.predict(clicks, state)
        enforced += local.obeyed
        state, mask = prediction.state, probability_mask(prediction.prob)
        assert all(mask[int(c.y), int(c.x)] == c.is_positive for c in clicks)
    assert enforced >= 1


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(
        folder / "a.png"
    )
    return folder / "a.png"


def test_in_the_window_a_far_negative_click_keeps_the_object(qtbot, tmp_path, photo, messages) -> None:
    """The window's predictions go through the rule (the Model menu's setting, on by default): a
    network that forgets the object at a far negative click no longer empties the mask."""
    window = make_window(qtbot, tmp_path, DiskPredictor(only_last=True))
    open_and_wait(window, photo)
    assert window.settings.local_edits and window.actions_by_name["local_edits"].isChecked()
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    first = probability_mask(window.doc.prob, window.doc.threshold)
    assert first.sum() > 300
    click(qtbot, window, 90, 120, Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 2), timeout=5000)
    np.testing.assert_array_equal(probability_mask(window.doc.prob, window.doc.threshold), first)
    qtbot.waitUntil(lambda: window.message_label.text().startswith("Kept"), timeout=5000)
    assert f"Kept {first.sum():,} px that the click would have removed" in window.message_label.text()
    window.actions_by_name["local_edits"].trigger()  # off: the next click is the network's alone
    assert not window.settings.local_edits
    click(qtbot, window, 100, 40, Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 3), timeout=5000)
    assert not probability_mask(window.doc.prob, window.doc.threshold).any()
    window.close()


def test_in_the_window_engines_with_own_click_rules_are_left_alone(qtbot, tmp_path, photo, messages) -> None:
    """A classical engine's negative seed acts on the whole image by design: the window does not apply
    the rule to it (``own_click_rules``), as the built-in engines declare."""
    from model.engines import ENGINE_NAMES, build_engine

    assert all(build_engine(name).own_click_rules for name in ENGINE_NAMES)
    engine = DiskPredictor(only_last=True)
    engine.own_click_rules = True
    window = make_window(qtbot, tmp_path, engine)
    open_and_wait(window, photo)
    click(qtbot, window, 30, 30)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    click(qtbot, window, 90, 120, Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 2), timeout=5000)
    assert window.settings.local_edits and not probability_mask(window.doc.prob, window.doc.threshold).any()
    window.close()


def test_the_bundled_network_keeps_the_man_after_a_negative_on_the_woman(
    qtbot, tmp_path, messages, monkeypatch
) -> None:
    """The first hour's complaint, through the window with the shipped network on the bundled photo: a
    click on the man's hands selects him; a negative click on the woman behind him used to leave only
    his hands (1,859 of 12,257 px) and now takes nothing of him away."""
    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow
    from resources import SAMPLE_IMAGE, bundled_model

    assert bundled_model() is not None
    monkeypatch.setenv("ISEGFORMER_DATA_DIR", str(tmp_path / "data"))  # no other test's autosave of it
    settings = Settings.load(tmp_path / "config")
    settings.precision = "fp32"  # no runtime measurement: the test is about the masks
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.models.active[1] == "isegformer-lite0", timeout=60000)
    open_and_wait(window, SAMPLE_IMAGE)
    click(qtbot, window, 170, 255)
    qtbot.waitUntil(predicted(window, 1), timeout=60000)
    first = probability_mask(window.doc.prob, window.doc.threshold)
    assert first.sum() > 8000  # the man, not his hands alone
    click(qtbot, window, 75, 195, Qt.MouseButton.RightButton)
    qtbot.waitUntil(predicted(window, 2), timeout=60000)
    second = probability_mask(window.doc.prob, window.doc.threshold)
    assert np.count_nonzero(first & ~second) == 0 and second.sum() < 1.2 * first.sum()
    doc = window.doc
    doc.saved_revision = doc.revision
    window.close()
