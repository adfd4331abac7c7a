"""NoC protocol: click simulator, per-object loop and dataset figures against the original's output."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from _noc_oracle import oracle_prediction

from model.clicks import Click
from model.evaluation.clicker import Clicker
from model.evaluation.noc import compute_noc, evaluate_sample, mask_iou
from model.prediction import ClickPredictor, Prediction, PredictionState


class DiskOracle:
    """The reference's deterministic oracle (its JSON ``oracle`` field): the ground truth inside
    60 px disks around positive clicks, dilated by a 7x7 square, minus 30 px disks around negative
    clicks wherever they lie outside the ground truth."""

    name = "disk-oracle"

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt.astype(bool)
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self.rows, self.cols = np.mgrid[: image.shape[0], : image.shape[1]]

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        self.calls += 1
        return Prediction.of(oracle_prediction(self.gt, self.rows, self.cols, clicks))


class FixedPredictor:
    """Returns the same probability maps in turn (one per click), whatever the clicks."""

    name = "fixed"

    def __init__(self, maps: Sequence[np.ndarray]) -> None:
        self.maps = list(maps)
        self.seen_clicks: list[list[Click]] = []
        self.seen_states: list[PredictionState | None] = []
        self.given: list[Prediction] = []

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        self.seen_clicks.append(list(clicks))
        self.seen_states.append(state)
        self.given.append(Prediction.of(self.maps[min(len(self.seen_clicks), len(self.maps)) - 1]))
        return self.given[-1]


@pytest.fixture(scope="module")
def oracle_reference(reference_dir):
    reference = json.loads((reference_dir / "noc_oracle_reference.json").read_text())
    data = np.load(reference_dir / "voc_instances.npz")
    return reference, data["image"], data["masks"]


def test_oracle_reference_is_reproduced(oracle_reference) -> None:
    reference, image, masks = oracle_reference
    assert "60^2" in reference["oracle"] and "30^2" in reference["oracle"]  # the oracle implemented above
    assert isinstance(DiskOracle(masks[0]), ClickPredictor)
    all_ious = []
    for expected in reference["per_object"]:
        gt = masks[expected["object"]].astype(np.int32)
        result = evaluate_sample(DiskOracle(gt), image, gt, max_clicks=20, target_iou=0.90, threshold=0.49)
        clicks = [[c.y, c.x, c.is_positive] for c in result.clicks]
        assert clicks == expected["clicks"], f"object {expected['object']}"
        assert [c.index for c in result.clicks] == list(range(len(clicks)))
        np.testing.assert_allclose(result.ious, expected["ious"], rtol=0, atol=1e-6)
        assert result.seconds > 0
        all_ious.append(result.ious)

    summary = compute_noc(all_ious, iou_thresholds=(0.80, 0.85, 0.90), max_clicks=20)
    assert summary.noc == pytest.approx(reference["noc"], abs=1e-12)
    assert summary.over_max == reference["over_20"]
    assert summary.n_objects == 19
    assert summary.n_clicks == sum(len(o["clicks"]) for o in reference["per_object"])


def test_first_click_is_centre_of_object() -> None:
    gt = np.zeros((11, 11), dtype=np.int32)
    gt[2:7, 2:9] = 1  # 5 x 7 rectangle: the deepest pixels are the row 4, columns 4..6; first is (4, 4)
    click = Clicker(gt).next_click(np.zeros_like(gt, dtype=bool))
    assert (click.y, click.x, click.is_positive, click.index) == (4, 4, True, 0)


def test_image_border_counts_as_boundary() -> None:
    gt = np.zeros((11, 11), dtype=np.int32)
    gt[:, :3] = 1  # a strip along the left border: the 1 px padding makes column 1 the deepest
    click = Clicker(gt).next_click(np.zeros_like(gt, dtype=bool))
    assert (click.y, click.x) == (1, 1)


def test_larger_error_wins_and_ties_are_negative() -> None:
    gt = np.zeros((20, 20), dtype=np.int32)
    gt[2:7, 2:7] = 1  # missed 5x5 object: false negative, depth 3
    pred = np.zeros((20, 20), dtype=bool)
    pred[10:17, 10:17] = True  # 7x7 false positive, depth 4 -> negative click at its centre
    click = Clicker(gt).next_click(pred)
    assert (click.y, click.x, click.is_positive) == (13, 13, False)

    pred[:] = False
    pred[10:15, 10:15] = True  # 5x5 false positive: same depth as the false negative -> negative
    click = Clicker(gt).next_click(pred)
    assert (click.y, click.x, click.is_positive) == (12, 12, False)


def test_ignored_pixels_are_never_errors_and_clicked_pixels_are_skipped() -> None:
    gt = np.zeros((20, 20), dtype=np.int32)
    gt[2:12, 2:12] = -1  # a large ignored region and a small object
    gt[15:18, 15:18] = 1
    clicker = Clicker(gt)
    pred = gt == -1  # predicted over the ignored region only: were it counted, a deep false positive
    first = clicker.make_next_click(pred)
    assert (first.y, first.x, first.is_positive) == (16, 16, True)
    second = clicker.make_next_click(pred)  # same error, the centre is taken: next deepest pixel
    assert (second.y, second.x, second.is_positive, second.index) == (15, 15, True, 1)
    assert len(clicker) == 2


def test_mask_iou_leaves_out_ignored_pixels() -> None:
    gt = np.array([[1, 1, 0, -1], [0, 0, 0, -1]], dtype=np.int32)
    pred = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    assert mask_iou(gt, pred) == pytest.approx(1 / 3)


def test_loop_stops_at_target_and_runs_to_max_clicks_otherwise() -> None:
    gt = np.zeros((10, 10), dtype=np.int32)
    gt[2:8, 2:8] = 1
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    half = np.zeros((10, 10), dtype=np.float32)
    half[2:8, 2:5] = 0.9  # IoU 0.5
    full = (gt == 1).astype(np.float32) * 0.5  # > 0.49 -> IoU 1.0
    predictor = FixedPredictor([half, half, full])
    result = evaluate_sample(predictor, image, gt, max_clicks=20, target_iou=0.9, threshold=0.49)
    np.testing.assert_allclose(result.ious, [0.5, 0.5, 1.0])
    assert [len(c) for c in predictor.seen_clicks] == [1, 2, 3]  # all clicks so far, every time
    # each click continues from the state of the one before (the caller holds it), the first from none
    assert predictor.seen_states == [None, predictor.given[0].state, predictor.given[1].state]
    assert result.clicks[0].is_positive and result.clicks[1].is_positive

    stuck = FixedPredictor([half])
    result = evaluate_sample(stuck, image, gt, max_clicks=5, target_iou=0.9)
    assert len(result.ious) == 5 and len(result.clicks) == 5

    with pytest.raises(ValueError, match="no object pixel"):
        evaluate_sample(stuck, image, np.zeros_like(gt))


def test_compute_noc_figures() -> None:
    curves = [
        np.array([0.5, 0.82, 0.86, 0.91]),  # NoC 2 / 3 / 4
        np.array([0.95]),  # 1 / 1 / 1
        np.array([0.1, 0.2, 0.3, 0.4, 0.5]),  # never: 5 / 5 / 5 (max_clicks 5)
        np.array([0.7, 0.7, 0.7, 0.7, 0.92]),  # reached at the last click: 5 / 5 / 5, counted in over_max
    ]
    seconds = [1.0, 0.5, 2.0, 1.5]
    summary = compute_noc(curves, iou_thresholds=(0.80, 0.85, 0.90), max_clicks=5, seconds=seconds)
    assert summary.noc == pytest.approx({"80": 13 / 4, "85": 14 / 4, "90": 15 / 4})
    assert summary.over_max == {"80": 2, "85": 2, "90": 2}
    assert summary.n_clicks == 15 and summary.n_objects == 4
    assert summary.seconds_per_click == pytest.approx(5.0 / 15)
    padded = [[0.5, 0.82, 0.86, 0.91, 0.91], [0.95] * 5, [0.1, 0.2, 0.3, 0.4, 0.5], [0.7] * 4 + [0.92]]
    expected_miou = np.mean(padded, axis=0)
    np.testing.assert_allclose(summary.mean_iou_per_click, expected_miou, rtol=1e-6)
    assert summary.to_dict()["noc"]["85"] == pytest.approx(3.5)

    with pytest.raises(ValueError):
        compute_noc([np.zeros(6)], max_clicks=5)


def test_volume_propagation_places_its_extra_clicks_with_the_noc_clicker() -> None:
    """Propagation without a previous-mask input is the NoC user with the neighbour's mask as truth."""
    from fakes import DiskPredictor

    from isegformer_app.state.propagation import propagate_mask

    source = np.zeros((40, 40), bool)
    source[8:32, 5:35] = True  # 24 x 30: a radius-4 disk per click covers little of it
    predictor = DiskPredictor(radius=4)
    clicks, _ = propagate_mask(predictor, np.zeros((40, 40, 3), np.uint8), source, 0.49, max_clicks=4)
    assert len(clicks) == 4 and all(c.is_positive for c in clicks)
    replay = Clicker(source.astype(np.int32))
    replay.add_click(clicks[0])
    for n in range(1, 4):
        pred = DiskPredictor(radius=4)
        pred.set_image(np.zeros((40, 40, 3), np.uint8))
        expected = replay.make_next_click(pred.predict(clicks[:n]).prob > 0.49)
        assert (clicks[n].y, clicks[n].x, clicks[n].index) == (expected.y, expected.x, n)
