"""Second clicks that agree with the mask: where they land, what they measure, and the comparison script."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.clicks import Click
from model.evaluation.clicker import IGNORE_LABEL
from model.evaluation.noc import mask_iou
from model.evaluation.second_click import (
    SecondClickResult,
    evaluate_second_clicks,
    nearby_negative_click,
    second_positive_click,
)
from model.prediction import Prediction, PredictionState
from training.benchmarks.second_clicks import (
    LOST,
    SecondClickSummary,
    click_sequence_pixels,
    main,
    parse_models,
)
from training.evaluate import main as eval_main


def bar_mask() -> np.ndarray:
    """A 20 x 100 bar (rows 10-29, columns 10-109) in a 40 x 120 image."""
    mask = np.zeros((40, 120), dtype=np.int64)
    mask[10:30, 10:110] = 1
    return mask


def test_second_positive_lands_on_the_far_deep_end_of_the_object() -> None:
    # depth >= 2.5 (a quarter of the bar's depth 10) keeps rows 12-27, columns 12-107; the farthest of
    # those from the protocol's first click (19, 19) is the corner (27, 107)
    click = second_positive_click(bar_mask(), Click(19, 19, True))
    assert click is not None and (click.y, click.x, click.is_positive, click.index) == (27, 107, True, 1)


def test_second_positive_is_none_on_an_object_without_another_part() -> None:
    mask = np.zeros((20, 20), dtype=np.int64)
    mask[8:11, 8:11] = 1  # 3 x 3: every pixel within 1.5 px of the centre
    assert second_positive_click(mask, Click(9, 9, True)) is None


def square_scene() -> np.ndarray:
    mask = np.zeros((200, 200), dtype=np.int64)
    mask[80:120, 80:120] = 1
    return mask


def test_nearby_negative_is_the_band_pixel_nearest_the_first_click() -> None:
    # diagonal 282.8: the band is 5.66-28.3 px from the object; column 74 is the first outside 5.66
    gt = square_scene()
    click = nearby_negative_click(gt, gt == 1, Click(90, 85, True))
    assert click is not None and (click.y, click.x, click.is_positive) == (90, 74, False)


def test_nearby_negative_skips_ignored_pixels_and_the_first_mask() -> None:
    gt = square_scene()
    gt[:, :78] = IGNORE_LABEL
    click = nearby_negative_click(gt, gt == 1, Click(90, 85, True))
    assert click is not None and (click.y, click.x) == (74, 85)  # row 74: 6 px above the object
    assert nearby_negative_click(gt, np.ones(gt.shape, dtype=bool), Click(90, 85, True)) is None


class DiskPredictor:
    """Object = 12 px disks around positive clicks, minus disks of ``negative_radius`` around negative
    clicks; records the state each call continues from."""

    name = "disks"

    def __init__(self, negative_radius: float = 2.0) -> None:
        self.negative_radius = negative_radius
        self.states: list[PredictionState | None] = []

    def set_image(self, image: np.ndarray) -> None:
        self.rows, self.cols = np.mgrid[: image.shape[0], : image.shape[1]]

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        self.states.append(state)
        prob = np.zeros(self.rows.shape, dtype=np.float32)
        for click in clicks:
            near = np.hypot(self.rows - click.y, self.cols - click.x)
            if click.is_positive:
                prob[near <= 12] = 1
        for click in clicks:
            if not click.is_positive:
                prob[np.hypot(self.rows - click.y, self.cols - click.x) <= self.negative_radius] = 0
        return Prediction.of(prob)


def test_evaluate_second_clicks_measures_each_click_from_the_first_prediction() -> None:
    gt = bar_mask()
    image = np.zeros((*gt.shape, 3), dtype=np.uint8)
    predictor = DiskPredictor()
    result = evaluate_second_clicks(predictor, image, gt)
    disk = np.hypot(*np.mgrid[-19:21, -19:101]) <= 12  # the first disk, centred on (19, 19)
    assert result.first == Click(19, 19, True, 0)
    assert result.first_iou == pytest.approx(mask_iou(gt, disk))
    assert result.positive_iou is not None and result.positive_iou > result.first_iou  # a second disk adds
    # the negative: 3 px above the bar (the band starts at 2 % of the 126.5 px diagonal), nearest the first
    # click outside the first disk ((7, 19) lies on its edge); its 2 px disk removes background only
    assert result.negative == Click(7, 18, False, 1)
    rows, cols = np.mgrid[:40, :120]
    expected = disk & (np.hypot(rows - 7, cols - 18) > 2)
    assert result.negative_iou == pytest.approx(mask_iou(gt, expected))
    assert result.negative_iou > result.first_iou
    # both second clicks continue from the first prediction's state
    assert predictor.states[0] is None and predictor.states[1] is not None
    assert predictor.states[2] is predictor.states[1]


def test_a_negative_that_reaches_into_the_object_is_counted_as_lost() -> None:
    gt = bar_mask()
    image = np.zeros((*gt.shape, 3), dtype=np.uint8)
    keeps = evaluate_second_clicks(DiskPredictor(), image, gt)
    loses = evaluate_second_clicks(DiskPredictor(negative_radius=30.0), image, gt)
    assert loses.negative_iou is not None and loses.negative_iou < keeps.first_iou - LOST
    summary = SecondClickSummary.of([keeps, loses])
    assert summary.objects == 2 and summary.negatives == 2 and summary.negative_lost == 1
    changes = [r.negative_iou - r.first_iou for r in (keeps, loses) if r.negative_iou is not None]
    assert summary.negative_change == pytest.approx(np.mean(changes))
    assert summary.positive_lost == 0


def test_summary_leaves_out_objects_without_the_click() -> None:
    results = [
        SecondClickResult(0.5, 0.7, None, Click(0, 0, True), Click(1, 1, True), None),
        SecondClickResult(0.3, 0.2, 0.1, Click(0, 0, True), Click(1, 1, True), Click(2, 2, False)),
    ]
    summary = SecondClickSummary.of(results)
    assert summary.miou_first == pytest.approx(0.4)
    assert (summary.positives, summary.negatives, summary.negative_lost, summary.positive_lost) == (
        2,
        1,
        1,
        1,
    )
    assert summary.positive_change == pytest.approx(0.05) and summary.negative_change == pytest.approx(-0.2)


def test_click_sequence_pixels_counts_the_mask_after_each_click() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    pixels = click_sequence_pixels(DiskPredictor(), image, [(50, 50, True), (50, 60, False)])
    disk = int(np.count_nonzero(np.hypot(*np.mgrid[-50:50, -50:50]) <= 12))
    assert pixels[0] == disk and 0 < pixels[1] < disk


def test_parse_models_labels_and_refuses_duplicates() -> None:
    assert parse_models(["new=run/a.pth", "runs/cpu11/w.pth"], ["geodesic"]) == [
        ("new", "checkpoint", "run/a.pth"),
        ("cpu11", "checkpoint", "runs/cpu11/w.pth"),
        ("geodesic", "engine", "geodesic"),
    ]
    with pytest.raises(ValueError, match="share a label"):
        parse_models(["a=x.pth", "a=y.pth"], [])
    with pytest.raises(ValueError, match="at least one"):
        parse_models([], [])


def test_script_first_click_matches_the_noc_protocol(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """On an export data set the script's mIoU@1 is isegformer-eval's for the same engine."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
    ids = np.zeros((96, 128), dtype=np.uint8)
    cv2.circle(ids, (40, 48), 22, 1, -1)
    cv2.rectangle(ids, (80, 20), (120, 80), 2, -1)
    image[ids == 1] += np.array([180, 40, 40], dtype=np.uint8)
    image[ids == 2] += np.array([30, 170, 60], dtype=np.uint8)
    assert cv2.imwrite(str(root / "images" / "a.png"), image[:, :, ::-1])
    assert cv2.imwrite(str(root / "masks" / "a.png"), ids)

    out = tmp_path / "sc.json"
    spec = f"toy:Export={root}"
    assert main(["--datasets", spec, "--engine", "geodesic", "--no-bundled-photo", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    record = json.loads(out.read_text())
    objects = record["sets"]["toy"]["geodesic"]
    assert len(objects) == 2 and "| toy | geodesic | 2 |" in table
    assert eval_main(["--engine", "geodesic", "--datasets", spec, "--output", str(tmp_path / "eval"),
                      "--no-progress", "--max-clicks", "1"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    first_ious = [o["ious"][0] for o in report["datasets"]["toy"]["objects"]]
    np.testing.assert_allclose([o["first_iou"] for o in objects], first_ious, atol=1e-6)
    assert all(o["clicks"][0][:2] == c["clicks"][0][:2] for o, c in
               zip(objects, report["datasets"]["toy"]["objects"], strict=True))  # fmt: skip


def test_script_bad_input_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--checkpoint", str(tmp_path / "missing.pth"), "--no-bundled-photo"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["--engine", "geodesic", "--datasets", f"x:Export={tmp_path / 'none'}"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(tmp_path / "bad.pth"), "--no-bundled-photo"]) == 2
    assert capsys.readouterr().err.startswith("second_clicks: ")
    assert main(["--engine", "geodesic", "--threshold", "1.5", "--no-bundled-photo"]) == 2
    assert "--threshold must lie in (0, 1)" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["--engine", "geodesic", "--json", str(tmp_path / "a_file" / "out.json")]) == 2
    assert "--json's folder" in capsys.readouterr().err


def test_script_sample_unreadable_during_the_run_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                ) -> None:  # fmt: skip
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "a.png").write_bytes(b"not a png")
    ids = np.zeros((32, 32), dtype=np.uint8)
    ids[8:20, 8:20] = 1
    assert cv2.imwrite(str(root / "masks" / "a.png"), ids)
    assert main(["--engine", "geodesic", "--datasets", f"x:Export={root}", "--no-bundled-photo"]) == 2
    assert capsys.readouterr().err.startswith("second_clicks: ")
