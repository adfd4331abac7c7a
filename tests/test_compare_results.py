"""The paired comparison of two evaluations (training.compare_results)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.evaluation.noc import compute_noc
from training import compare_results
from training.ship_model import pooled_figures


def _dataset(curves: list[np.ndarray], name: str) -> dict:
    """One dataset entry as isegformer-eval writes it: the summary plus each object's IoU curve."""
    entry = compute_noc(curves, (0.85, 0.9), max_clicks=20).to_dict()
    entry["objects"] = [
        {"sample": f"{name}_{index // 2}", "object_id": index % 2 + 1, "ious": [float(v) for v in c]}
        for index, c in enumerate(curves)
    ]
    return entry


def _curves(rng: np.random.Generator, count: int, shift: float = 0.0) -> list[np.ndarray]:
    curves = []
    for _ in range(count):
        length = int(rng.integers(3, 21))  # some stop early, as the protocol does at the target IoU
        curve = np.clip(np.sort(rng.uniform(0.2, 0.97, length)) + shift, 0, 1)
        curves.append(curve)
    return curves


def _results(**sets: list[np.ndarray]) -> dict:
    return {"datasets": {name: _dataset(curves, name) for name, curves in sets.items()}}


def test_means_of_the_paired_objects_are_the_evaluation_figures():
    rng = np.random.default_rng(0)
    base = _results(voc=_curves(rng, 19), arc=_curves(rng, 8))
    new = _results(voc=_curves(rng, 19), arc=_curves(rng, 8))
    result = compare_results.compare(base, new, ("voc", "arc"), resamples=2000)
    assert result.objects == 27
    for results, means in ((base, result.base), (new, result.new)):
        pooled = pooled_figures(results, ("voc", "arc"))
        expected = [pooled["noc85"], pooled["noc90"], pooled["miou1"], pooled["miou5"]]
        np.testing.assert_allclose(means, expected, rtol=1e-6)
    np.testing.assert_allclose(result.difference, result.new - result.base, atol=1e-9)
    assert np.all(result.low <= result.difference + 1e-9) and np.all(result.difference <= result.high + 1e-9)
    assert np.all(result.low < result.high)  # different random curves: a real spread


def test_an_iou_stored_at_a_threshold_counts_as_the_evaluation_counted_it():
    """isegformer-eval stores float32 IoUs (JSON holds 0.8999999761581421 for float32 0.9) and counts
    that as reaching 90 %; the comparison must count the same clicks."""
    at_threshold = np.array([0.5, 0.8, np.float32(0.9)], dtype=np.float32)
    results = _results(voc=[at_threshold, np.array([0.95], dtype=np.float32)])
    results = json.loads(json.dumps(results))  # as read back from results.json
    assert results["datasets"]["voc"]["objects"][0]["ious"][2] < 0.9  # the float64 reading misses it
    assert results["datasets"]["voc"]["noc"]["90"] == 2.0  # the evaluation: 3 clicks and 1 click
    result = compare_results.compare(results, results, ("voc",), resamples=100)
    assert result.base[1] == 2.0


def test_no_difference_gives_a_zero_interval_and_a_uniform_gain_a_sure_one():
    rng = np.random.default_rng(1)
    curves = _curves(rng, 12)
    base = _results(voc=curves)
    same = compare_results.compare(base, _results(voc=curves), ("voc",), resamples=500)
    assert np.all(same.low == 0) and np.all(same.high == 0) and np.all(same.new_better_share == 0)
    lower = [np.clip(c - 0.1, 0, 1) for c in curves]  # every object 0.1 IoU worse at every click
    worse = compare_results.compare(base, _results(voc=lower), ("voc",), resamples=500)
    np.testing.assert_allclose(worse.low[2:], worse.high[2:], atol=1e-6)  # mIoU: the same shift everywhere
    assert worse.high[2] < 0 and worse.new_better_share[2] == 0
    assert worse.difference[0] >= 0 and worse.difference[1] >= 0  # NoC cannot fall when every IoU falls


def test_different_objects_are_refused():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="different objects"):
        compare_results.compare(_results(voc=_curves(rng, 5)), _results(voc=_curves(rng, 6)), ("voc",))
    with pytest.raises(ValueError, match="per-object figures for 'arc'"):
        compare_results.compare(_results(voc=_curves(rng, 5)), _results(voc=_curves(rng, 5)), ("arc",))
    repeated = _results(voc=_curves(rng, 4))
    repeated["datasets"]["voc"]["objects"][1]["sample"] = repeated["datasets"]["voc"]["objects"][0]["sample"]
    repeated["datasets"]["voc"]["objects"][1]["object_id"] = repeated["datasets"]["voc"]["objects"][0][
        "object_id"
    ]
    with pytest.raises(ValueError, match="listed more than once"):
        compare_results.compare(repeated, repeated, ("voc",))


def test_command_prints_each_shared_set_and_the_pool(tmp_path, capsys):
    rng = np.random.default_rng(3)
    paths = []
    for name in ("base", "new"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_results(voc=_curves(rng, 6), arc=_curves(rng, 4))))
        paths.append(str(path))
    assert compare_results.main([*paths, "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "voc: 6 objects paired" in out and "arc: 4 objects paired" in out
    assert "voc + arc: 10 objects paired" in out and out.count("NoC@90") == 3
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert compare_results.main([paths[0], str(broken)]) == 2
    assert "not an isegformer-eval results.json" in capsys.readouterr().err
    assert compare_results.main([*paths, "--sets", "voc,nuclei"]) == 2
    assert "'nuclei' not in both results" in capsys.readouterr().err
    assert compare_results.main([*paths, "--resamples", "5"]) == 2
    assert compare_results.main([*paths, "--resamples", "10000000"]) == 2
    assert "--resamples must be between 100 and 100000" in capsys.readouterr().err


def test_runs_evaluated_differently_are_named_before_the_tables(tmp_path, capsys):
    rng = np.random.default_rng(4)
    curves = _curves(rng, 6)
    settings = {"threshold": 0.49, "max_clicks": 20}
    network = {**_results(voc=curves), "settings": settings, "checkpoint": "a.pth", "zoom_in": True,
               "flip": True, "max_size": None}  # fmt: skip
    assert compare_results.protocol_differences(network, dict(network)) == []
    app_way = {**network, "max_size": 800, "local_edits": True}
    assert compare_results.protocol_differences(network, app_way) == [
        "local_edits: False -> True", "max_size: None -> 800"
    ]
    older = {key: value for key, value in network.items() if key != "flip"}  # absent: the default (True)
    assert compare_results.protocol_differences(older, network) == []
    engine = {**_results(voc=curves), "settings": settings, "engine": "geo"}
    assert compare_results.protocol_differences(engine, network) == []  # ZoomIn etc. are the network's own
    fewer = {**engine, "settings": {"threshold": 0.49, "max_clicks": 10}}
    assert compare_results.protocol_differences(engine, fewer) == ["max_clicks: 20 -> 10"]
    paths = []
    for name, results in (("base", network), ("new", app_way)):
        paths.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    assert compare_results.main([*paths, "--sets", "voc", "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("note: the two runs differ in how they were evaluated: local_edits: False -> True; "
                          "max_size: None -> 800")  # fmt: skip


def test_sets_scored_on_different_masks_are_named(tmp_path, capsys):
    """The same objects with VOC's void border ignored or not are not comparable figures: the count of
    ignored pixels each results.json records is part of the protocol (older results did not record it)."""
    curves = _curves(np.random.default_rng(5), 6)
    older, corrected = _results(voc=curves, arc=curves), _results(voc=curves, arc=curves)
    corrected["datasets"]["voc"]["ignored_pixels"] = 21_813
    corrected["datasets"]["arc"]["ignored_pixels"] = 0
    expected = ["voc ignored pixels: not recorded -> 21,813"]
    assert compare_results.protocol_differences(older, corrected) == expected
    assert compare_results.protocol_differences(corrected, corrected) == []
    fewer = json.loads(json.dumps(corrected))
    fewer["datasets"]["voc"]["ignored_pixels"] = 100
    assert compare_results.protocol_differences(corrected, fewer) == ["voc ignored pixels: 21,813 -> 100"]
