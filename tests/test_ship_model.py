"""Shipping the default network: the measured rule that picks each modality's default engine, the
defaults file the app and isegformer-eval read, and its fallbacks."""

from __future__ import annotations

import json

import pytest

import resources
from model.checkpoint import read_checkpoint
from training.data.pack import initial_checkpoint
from training.evaluate import default_model_source
from training.ship_model import main, modality_defaults, network_beats, pooled_figures, replaces_shipped

OBJECTS = {"voc": 19, "arc": 8}  # objects per set (10 in the others)


def _results(**sets: tuple[float, float, float, float]) -> dict:
    """An isegformer-eval results.json with (NoC@85, NoC@90, mIoU@1, mIoU@5) per dataset."""
    datasets = {}
    for name, (noc85, noc90, miou1, miou5) in sets.items():
        datasets[name] = {
            "n_objects": OBJECTS.get(name, 10),
            "noc": {"80": noc85, "85": noc85, "90": noc90},
            "mean_iou_per_click": [miou1, 0.5, 0.5, 0.5, miou5] + [0.9] * 15,
        }
    return {"datasets": datasets}


CLASSICAL = {
    "voc": (16.26, 17.74, 0.30, 0.42),
    "arc": (11.12, 16.88, 0.16, 0.61),
    "mni": (19.9, 20.0, 0.11, 0.18),
    "mr_real": (1.0, 2.4, 0.80, 0.94),
    "mr_tumour": (17.11, 19.33, 0.014, 0.414),
    "ct_lung": (8.5, 12.86, 0.12, 0.649),
}
LESIONS = {"mr_tumour": (14.22, 17.89, 0.248, 0.560), "ct_lung": (6.5, 9.5, 0.579, 0.840)}


def test_network_beats_needs_no_worse_on_all_four_and_better_on_one():
    classical = {"noc85": 16.26, "noc90": 17.74, "miou1": 0.30, "miou5": 0.42}
    assert network_beats({"noc85": 12.0, "noc90": 15.0, "miou1": 0.5, "miou5": 0.7}, classical)
    assert not network_beats(
        {"noc85": 12.0, "noc90": 18.0, "miou1": 0.5, "miou5": 0.7}, classical
    )  # NoC@90 worse
    assert not network_beats({"noc85": 12.0, "noc90": 15.0, "miou1": 0.29, "miou5": 0.7}, classical)
    assert not network_beats(dict(classical), classical)  # a tie is not a win


def test_each_modality_is_judged_on_its_own_sets():
    network = _results(
        voc=(11.0, 14.0, 0.55, 0.78),
        arc=(9.5, 14.5, 0.47, 0.78),
        mni=(15.0, 19.0, 0.2, 0.4),
        mr_real=(2.0, 4.0, 0.7, 0.9),
        **LESIONS,
    )
    classical = _results(**CLASSICAL)
    decisions = modality_defaults(network, classical, "isegformer-lite0")
    assert decisions["photo"]["engine"] == "isegformer-lite0"
    assert (
        "beats it on voc" in decisions["photo"]["reason"]
        and "beats it on arc" in decisions["photo"]["reason"]
    )
    # better on the MNI parts and the outlined lesions, worse on the real MR slices: volumes keep the
    # classical engine, and the reason names every set
    assert decisions["volume"]["engine"] == "geo_grabcut"
    reason = decisions["volume"]["reason"]
    assert "does not beat it on mr_real" in reason
    assert "beats it on mr_tumour (10 objects" in reason and "beats it on ct_lung" in reason
    assert decisions["volume"]["sets"]["mni"]["network"]["noc85"] == 15.0
    # better on every volume set: volumes start on the network too
    network["datasets"]["mr_real"] = _results(mr_real=(1.0, 2.0, 0.85, 0.95))["datasets"]["mr_real"]
    assert modality_defaults(network, classical, "net")["volume"]["engine"] == "net"


def test_photos_keep_the_classical_engine_unless_the_network_beats_it_on_every_photo_set():
    network = _results(
        voc=(11.0, 14.0, 0.55, 0.78), arc=(12.0, 14.5, 0.47, 0.78),
        **{name: (1, 1, 1, 1) for name in ("mni", "mr_real", "mr_tumour", "ct_lung")},
    )
    decisions = modality_defaults(network, _results(**CLASSICAL), "net")
    assert decisions["photo"]["engine"] == "geo_grabcut"  # arc NoC@85 12.0 is worse than 11.12
    assert "does not beat it on arc" in decisions["photo"]["reason"]


def test_pooled_figures_weigh_each_set_by_its_objects():
    pooled = pooled_figures(_results(voc=(15.0, 17.0, 0.3, 0.6), arc=(9.0, 14.0, 0.5, 0.8)), ("voc", "arc"))
    assert pooled["objects"] == 27
    assert pooled["noc85"] == pytest.approx((19 * 15.0 + 8 * 9.0) / 27)
    assert pooled["miou1"] == pytest.approx((19 * 0.3 + 8 * 0.5) / 27)


def test_a_candidate_replaces_the_shipped_network_only_when_better_on_the_photos_together():
    shipped = _results(voc=(15.26, 17.42, 0.363, 0.588), arc=(9.50, 14.50, 0.473, 0.775))
    # better on three pooled figures, mIoU@1 lower (the CPU segment cpu6): not a replacement
    cpu6 = _results(voc=(15.21, 16.89, 0.338, 0.589), arc=(9.12, 13.88, 0.453, 0.777))
    better, why = replaces_shipped(cpu6, shipped)
    assert not better and "does not replace" in why and "27 objects" in why
    # worse on one photo, better on the two together: a replacement
    mixed = _results(voc=(15.0, 17.0, 0.37, 0.60), arc=(9.6, 14.4, 0.48, 0.78))
    assert replaces_shipped(mixed, shipped)[0]
    assert not replaces_shipped(shipped, shipped)[0]  # a tie is not a win


def test_missing_set_is_an_error():
    with pytest.raises(ValueError, match="mr_real"):
        modality_defaults(
            _results(voc=(1, 1, 1, 1), arc=(1, 1, 1, 1), mni=(1, 1, 1, 1)), _results(**CLASSICAL), "net"
        )


def test_ship_writes_fp16_weights_and_the_defaults_the_app_reads(tmp_path, monkeypatch, capsys):
    source = tmp_path / "trained.pth"
    source.write_bytes(initial_checkpoint(""))
    net, classical = tmp_path / "net.json", tmp_path / "geo.json"
    net.write_text(json.dumps(_results(voc=(11.0, 14.0, 0.55, 0.78), arc=(9.0, 14.0, 0.5, 0.8))))
    (tmp_path / "net_mr.json").write_text(
        json.dumps(_results(mni=(15, 19, 0.2, 0.4), mr_real=(2, 4, 0.7, 0.9), **LESIONS))
    )
    classical.write_text(json.dumps(_results(**CLASSICAL)))
    out = tmp_path / "models"
    args = ["--checkpoint", str(source), "--network", str(net), str(tmp_path / "net_mr.json")]
    assert main([*args, "--classical", str(classical), "--out", str(out)]) == 0
    assert "photo: isegformer-lite0" in capsys.readouterr().out
    shipped = out / resources.DEFAULT_MODEL.name
    assert next(iter(read_checkpoint(shipped).state_dict.values())).dtype.itemsize == 2

    monkeypatch.setattr(resources, "DEFAULT_MODEL", shipped)
    defaults = resources.modality_defaults(out / resources.MODEL_DEFAULTS.name)
    assert defaults["photo"][0] == "isegformer-lite0" and defaults["volume"][0] == "geo_grabcut"
    monkeypatch.setattr(resources, "MODEL_DEFAULTS", out / resources.MODEL_DEFAULTS.name)
    engine, checkpoint, why = default_model_source()
    assert engine is None and checkpoint == shipped and "beats it on voc" in why

    # --shipped: a candidate no better than the network shipped now writes nothing
    (tmp_path / "old.json").write_text(
        json.dumps(_results(voc=(11.0, 14.0, 0.55, 0.78), arc=(9.0, 14.0, 0.5, 0.8)))
    )
    shipped.unlink()
    refused = main(
        [*args, "--classical", str(classical), "--out", str(out), "--shipped", str(tmp_path / "old.json")]
    )
    assert refused == 1 and not shipped.exists()
    assert "does not replace the shipped network on voc + arc" in capsys.readouterr().out


def test_defaults_fall_back_to_the_classical_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "DEFAULT_MODEL", tmp_path / "absent.pth")
    assert resources.modality_defaults(tmp_path / "absent.json") == {
        "photo": ("geo_grabcut", "no bundled network"),
        "volume": ("geo_grabcut", "no bundled network"),
    }
    weights = tmp_path / "net.pth"
    weights.write_bytes(initial_checkpoint(""))
    monkeypatch.setattr(resources, "DEFAULT_MODEL", weights)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert {engine for engine, _ in resources.modality_defaults(broken).values()} == {"geo_grabcut"}
    assert "no measured defaults" in resources.modality_defaults(broken)["photo"][1]


def test_figures_made_differently_ship_nothing(tmp_path, capsys):
    """A candidate scored with VOC's void border ignored is not compared with a shipped network (or the
    classical engine) scored without it, nor with a shipped network measured without the app's first-click
    zoom: ship_model refuses and writes nothing."""
    source = tmp_path / "trained.pth"
    source.write_bytes(initial_checkpoint(""))
    corrected = _results(voc=(10.0, 12.0, 0.45, 0.75), arc=(9.0, 14.0, 0.5, 0.8), **{
        k: v for k, v in CLASSICAL.items() if k not in ("voc", "arc")
    })
    corrected["datasets"]["voc"]["ignored_pixels"] = 21_813
    corrected["first_click_zoom"] = True
    classical = {**_results(**CLASSICAL), "engine": "geo_grabcut"}
    old = _results(**CLASSICAL)
    for name, results in (("net", corrected), ("geo", classical), ("old", old)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    out = tmp_path / "models"
    args = ["--checkpoint", str(source), "--network", str(tmp_path / "net.json"), "--out", str(out)]
    assert main([*args, "--classical", str(tmp_path / "geo.json")]) == 2
    assert "geo_grabcut were evaluated differently (voc ignored pixels: not recorded -> 21,813)" in (
        capsys.readouterr().err
    )
    classical["datasets"]["voc"]["ignored_pixels"] = 21_813
    (tmp_path / "geo.json").write_text(json.dumps(classical))
    shipped = str(tmp_path / "old.json")
    assert main([*args, "--classical", str(tmp_path / "geo.json"), "--shipped", shipped]) == 2
    error = capsys.readouterr().err
    assert "the shipped network were evaluated differently" in error
    assert "first_click_zoom: False -> True" in error
    assert "voc ignored pixels: not recorded -> 21,813" in error
    old["datasets"]["voc"]["ignored_pixels"] = 21_813
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main([*args, "--classical", str(tmp_path / "geo.json"), "--shipped", shipped]) == 2
    assert "(first_click_zoom: False -> True)" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--classical", str(tmp_path / "geo.json")]) == 0


def test_results_of_several_files_share_one_protocol(tmp_path):
    """merged_results keeps the protocol the files share, and refuses files made differently (a set
    measured with the first click refined, another without)."""
    from training.ship_model import merged_results

    photos = {**_results(voc=(10.0, 12.0, 0.45, 0.75)), "first_click_zoom": True, "max_size": 800}
    mr = {**_results(mr_real=(5.0, 6.0, 0.5, 0.8)), "first_click_zoom": True, "max_size": 800}
    for name, results in (("photos", photos), ("mr", mr)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    merged = merged_results([tmp_path / "photos.json", tmp_path / "mr.json"])
    assert set(merged["datasets"]) == {"voc", "mr_real"}
    assert merged["first_click_zoom"] is True and merged["max_size"] == 800
    mr["first_click_zoom"] = False
    (tmp_path / "mr.json").write_text(json.dumps(mr))
    with pytest.raises(ValueError, match="first_click_zoom: True -> False"):
        merged_results([tmp_path / "photos.json", tmp_path / "mr.json"])
