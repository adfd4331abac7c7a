"""Properties of the training click sampler (RITM's MultiPointSampler semantics)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.data.points_sampler import MultiPointSampler
from training.data.sample import sample_from_instances


def _two_squares() -> tuple[np.ndarray, np.ndarray]:
    instances = np.zeros((80, 100), np.int32)
    instances[10:50, 10:50] = 1  # 1600 px
    instances[20:40, 60:90] = 2  # 600 px
    return np.zeros((80, 100, 3), np.uint8), instances


def _split(points: np.ndarray, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = points[:n], points[n:]
    return pos[pos[:, 0] >= 0], neg[neg[:, 0] >= 0]


def test_positives_in_eroded_object_negatives_outside_and_counts() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, prob_gamma=0.8, positive_erode_prob=1.0)
    rng = np.random.default_rng(0)
    eroded = {
        v: cv2.erode((instances == v).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3).astype(bool)
        for v in (1, 2)
    }
    counts = []
    for _ in range(200):
        target, points = sampler.sample(sample_from_instances(image, instances), rng)
        assert points.shape == (48, 3) and points.dtype == np.float32
        object_value = int(instances[target == 1][0])
        assert np.array_equal(target == 1, instances == object_value)
        pos, neg = _split(points)
        assert 1 <= len(pos) <= 24 and 0 <= len(neg) <= 24
        ys, xs = pos[:, 0].astype(int), pos[:, 1].astype(int)
        assert eroded[object_value][ys, xs].all()
        assert (target[neg[:, 0].astype(int), neg[:, 1].astype(int)] == 0).all()
        assert set(pos[:, 2]) == {100.0} and (len(neg) == 0 or set(neg[:, 2]) == {100.0})
        # rows after the sampled points are padding
        assert (points[len(pos) : 24] == -1).all() and (points[24 + len(neg) :] == -1).all()
        counts.append(len(pos))
    # number of positives: 1 + k with P(k) ~ 0.8^k, k < 24
    k = np.arange(24)
    probs = 0.8**k / (0.8**k).sum()
    expected_mean = float(((1 + k) * probs).sum())
    assert np.mean(counts) == pytest.approx(expected_mean, rel=0.15)


def test_negative_border_band_width() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, negative_bg_prob=0.0, negative_other_prob=0.0, negative_border_prob=1.0)
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(50):
        target, points = sampler.sample(sample_from_instances(image, instances), rng)
        _, neg = _split(points)
        obj = (target == 1).astype(np.uint8)
        width = int(np.ceil(0.1 * np.sqrt(obj.sum())))  # 4 for the big square, 3 for the small one
        band = cv2.dilate(obj, np.ones((3, 3), np.uint8), iterations=width).astype(bool) & ~obj.astype(bool)
        assert band[neg[:, 0].astype(int), neg[:, 1].astype(int)].all()
        seen += len(neg)
    assert seen > 0


def test_other_objects_strategy_clicks_on_the_other_object() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, negative_bg_prob=0.0, negative_other_prob=1.0, negative_border_prob=0.0)
    rng = np.random.default_rng(2)
    for _ in range(30):
        target, points = sampler.sample(sample_from_instances(image, instances), rng)
        _, neg = _split(points)
        values = instances[neg[:, 0].astype(int), neg[:, 1].astype(int)]
        other = 3 - int(instances[target == 1][0])
        assert (values == other).all()


def test_merged_objects_get_one_first_click_each() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, merge_objects_prob=1.0, max_num_merged_objects=2, positive_erode_prob=0.0)
    rng = np.random.default_rng(3)
    for _ in range(30):
        target, points = sampler.sample(sample_from_instances(image, instances), rng)
        assert np.array_equal(target == 1, instances > 0)
        pos, _ = _split(points)
        first_two = instances[pos[:2, 0].astype(int), pos[:2, 1].astype(int)]
        assert sorted(first_two.tolist()) == [1, 2]
        assert (instances[pos[:, 0].astype(int), pos[:, 1].astype(int)] > 0).all()
        assert len(pos) <= 24


def test_background_only_sample_has_only_negative_clicks() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    target, points = MultiPointSampler(24).sample(
        sample_from_instances(image, np.zeros((40, 40), np.int32)), np.random.default_rng(4)
    )
    assert (target == 0).all()
    assert (points[:24] == -1).all()


def test_first_click_center_is_inside_inner_part() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, first_click_center=True)
    rng = np.random.default_rng(5)
    for _ in range(20):
        target, points = sampler.sample(sample_from_instances(image, instances), rng)
        y, x, index = points[0]
        assert index == 0.0
        obj = np.pad((target == 1).astype(np.uint8), 1)
        dist = cv2.distanceTransform(obj, cv2.DIST_L2, 0)[1:-1, 1:-1]
        assert dist[int(y), int(x)] > dist.max() / 1.7


def test_ignored_pixels_stay_ignored_in_the_target() -> None:
    image, instances = _two_squares()
    instances[0:5, :] = -1
    target, _ = MultiPointSampler(24).sample(
        sample_from_instances(image, instances), np.random.default_rng(6)
    )
    assert (target[0:5] == -1).all()


def test_same_seed_same_clicks() -> None:
    image, instances = _two_squares()
    sampler = MultiPointSampler(24, merge_objects_prob=0.15)
    runs = [
        [
            sampler.sample(sample_from_instances(image, instances), np.random.default_rng(seed))[1]
            for _ in range(1)
        ]
        for seed in (7, 7, 8)
    ]
    assert np.array_equal(runs[0][0], runs[1][0])
    assert not np.array_equal(runs[0][0], runs[2][0])
