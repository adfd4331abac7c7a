"""iSegFormer HRFormer (HRT + OCR, the paper's Table 4): outputs of the original code, the original
checkpoint format, variant sizes, ImageNet initialisation and a training step on the CPU."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _training_data import voc_views, write_cocolvis

from model.build import build_model
from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from model.modeling.hrformer import ORIGINAL_CLASS, build_hrformer, hrt_config_from_state_dict
from model.modeling.hrformer_backbone import hrt_config_from_original
from model.modeling.interactive import ClickEncoding, ClickFusion
from training.config import load_config
from training.data import CocoLvisSource
from training.pretrained import PretrainedError, load_pretrained
from training.train import build_from_config, build_train_set, resolve_config
from training.trainer import TRAIN_LOG, Trainer

REFERENCE = "isegformer_hrformer_tiny_ocr.pth"
REFERENCE_IO = "isegformer_hrformer_tiny_ocr_io.npz"
BACKBONE = "feature_extractor.backbone."


@pytest.fixture(scope="module")
def reference_model(reference_dir: Path):
    return load_checkpoint(reference_dir / REFERENCE)


@pytest.fixture(scope="module")
def reference_io(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / REFERENCE_IO) as data:
        return {key: data[key] for key in data.files}


def _tolerance(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, reference.abs().max().item())


def test_reference_outputs_match_the_original(reference_model, reference_io) -> None:
    image, points = torch.from_numpy(reference_io["input"]), torch.from_numpy(reference_io["points"])
    # Sample 1 (mirrored image, clicks moved) must not leak into sample 0.
    moved = torch.where(points[:, :, :2] >= 0, points[:, :, :2] + 11, points[:, :, :2])
    other = torch.cat((moved, points[:, :, 2:]), dim=2)
    with torch.no_grad():
        out = reference_model(torch.cat((image, image.flip(-1))), torch.cat((points, other)))
    assert out["instances"].shape == out["instances_aux"].shape == (2, 1, 224, 288)
    for ours, name in (("instances", "logits"), ("instances_aux", "logits_aux")):
        ref = torch.from_numpy(reference_io[name])
        assert (out[ours][:1] - ref).abs().max().item() <= _tolerance(ref), ours
        assert (out[ours][1] - out[ours][0]).abs().max().item() > 100 * _tolerance(ref)
    # The quirk: 'instances' is the auxiliary (soft-region) head's output, not the OCR classifier's.
    swapped = (out["instances"][:1] - torch.from_numpy(reference_io["logits_aux"])).abs().max().item()
    assert swapped > 0.05


def test_clicks_and_previous_mask_change_the_output(reference_model, reference_io) -> None:
    image, points = torch.from_numpy(reference_io["input"]), torch.from_numpy(reference_io["points"])
    no_mask = image.clone()
    no_mask[:, 3] = 0
    no_clicks = torch.full_like(points, -1.0)
    with torch.no_grad():
        base = reference_model(image, points)["instances"]
        for changed in (reference_model(no_mask, points), reference_model(image, no_clicks)):
            assert (changed["instances"] - base).abs().max().item() > 1e-3


def test_widths_are_read_off_the_weights(reference_dir: Path, reference_io) -> None:
    checkpoint = read_checkpoint(reference_dir / REFERENCE)
    assert checkpoint.class_name == ORIGINAL_CLASS
    backbone = {
        k.removeprefix(BACKBONE): v for k, v in checkpoint.state_dict.items() if k.startswith(BACKBONE)
    }
    config = hrt_config_from_state_dict(backbone)
    original = json.loads(str(reference_io["backbone_config"]))
    assert config == dataclasses.replace(hrt_config_from_original(original), drop_path_rate=0.2)
    head = json.loads(str(reference_io["head"]))
    model = load_checkpoint(reference_dir / REFERENCE)
    assert (
        (config.out_channels, model.network.hidden_dim)
        == (head["in_channels"], head["hidden_dim"])
        == (240, 64)
    )
    assert model.network.head.pixel_conv.conv.groups == 16  # gcd(240, 64)
    assert model.input_channels == 4 and model.encoding.fusion is ClickFusion.NAIVE_CONCAT


def test_input_not_a_multiple_of_windows_or_strides(reference_model, reference_io) -> None:
    # 94 x 122: stride-4 map 24 x 31 (padded to 28 x 35 for the 7-px windows), stride 32 map 3 x 4
    # (nearest-upsampled by 8 to 24 x 32, then resized to 24 x 31).
    crop = torch.from_numpy(reference_io["input"])[:, :, 70:164, 150:272]
    points = torch.tensor([[[20.0, 30.0, 0.0], [-1.0, -1.0, -1.0]]])
    with torch.no_grad():
        out = reference_model(crop, points)
    assert out["instances"].shape == (1, 1, 94, 122) and torch.isfinite(out["instances"]).all()
    assert torch.isfinite(out["instances_aux"]).all()


def test_save_then_load_is_identical_and_in_the_original_layout(
    reference_model, reference_dir: Path, reference_io, tmp_path: Path
) -> None:
    path = tmp_path / "hrformer.pth"
    save_checkpoint(reference_model, path, {"dataset": "test"})
    saved, original = read_checkpoint(path), read_checkpoint(reference_dir / REFERENCE)
    assert saved.class_name == ORIGINAL_CLASS
    # Same keys and shapes as the original's state dict: its strict load_state_dict accepts the file.
    assert {k: tuple(v.shape) for k, v in saved.state_dict.items()} == {
        k: tuple(v.shape) for k, v in original.state_dict.items()
    }
    for key, value in original.state_dict.items():
        if not key.startswith("maps_transform."):
            assert torch.equal(saved.state_dict[key], value), key
    assert set(original.params) <= set(saved.params)
    for key, value in original.params.items():
        if key == "norm_mean_std":  # a tuple of lists there, a list of lists here
            value = [list(v) for v in value]
        if key != "norm_layer":
            assert saved.params[key] == value, key
    reloaded = load_checkpoint(path)
    image, points = torch.from_numpy(reference_io["input"]), torch.from_numpy(reference_io["points"])
    with torch.no_grad():
        a, b = reference_model(image, points), reloaded(image, points)
    assert torch.equal(a["instances"], b["instances"]) and torch.equal(a["instances_aux"], b["instances_aux"])


def test_corrupt_checkpoints_are_clear_errors(reference_dir: Path, tmp_path: Path) -> None:
    raw = torch.load(reference_dir / REFERENCE, weights_only=False)
    broken = {**raw, "state_dict": dict(raw["state_dict"])}
    index_key = next(k for k in broken["state_dict"] if k.endswith("relative_position_index"))
    broken["state_dict"][index_key] = torch.zeros_like(broken["state_dict"][index_key])
    torch.save(broken, tmp_path / "index.pth")
    with pytest.raises(CheckpointError, match="relative_position_index"):
        load_checkpoint(tmp_path / "index.pth")
    missing = {**raw, "state_dict": {k: v for k, v in raw["state_dict"].items() if "conv3x3" not in k}}
    torch.save(missing, tmp_path / "head.pth")
    with pytest.raises(CheckpointError, match="conv3x3"):
        load_checkpoint(tmp_path / "head.pth")


@pytest.mark.parametrize(
    ("name", "published_params", "head_groups"), [("hrformer_small", 13.5, 32), ("hrformer_base", 50.3, 2)]
)
def test_variants_have_hrformers_published_size(name: str, published_params: float, head_groups: int) -> None:
    """Backbone (with a 3-channel conv1) + HRFormer's ImageNet classification head = HRT-S 13.5M / HRT-B
    50.3M parameters (HRFormer's model table)."""
    model = build_model(name)
    backbone = model.network.backbone
    params = sum(p.numel() for p in backbone.parameters()) - 64 * 3 * 3 * 3  # 6 -> 3 input channels
    head_widths = [32, 64, 128, 256]  # the classifier's incre_modules (Bottleneck, depth-wise 3x3)
    for channels, planes in zip(backbone.config.stages[-1].channels, head_widths, strict=True):
        params += channels * planes + planes * 9 + planes * 4 * planes + 2 * (planes + planes + 4 * planes)
        params += channels * 4 * planes + 2 * 4 * planes  # projection shortcut
    for a, b in zip(head_widths[:-1], head_widths[1:], strict=True):  # downsamp_modules
        params += 4 * a * 9 + 4 * a + 2 * 4 * a + 4 * a * 4 * b + 4 * b + 2 * 4 * b
    params += 1024 * 2048 + 2048 + 2 * 2048 + 2048 * 1000 + 1000  # final_layer + classifier
    assert round(params / 1e6, 1) == published_params
    assert model.arch == name and model.input_channels == 4 and model.encoding.with_aux_output
    assert model.network.head.pixel_conv.conv.groups == head_groups
    assert model.network.hidden_dim == 512


def _released_layout(reference_dir: Path) -> dict[str, torch.Tensor]:
    """An ImageNet file in HRFormer's key layout (``hrt_base.pth``): the fixture's backbone weights
    under their original names without prefix, a 3-channel conv1, plus classifier-only tensors."""
    state = read_checkpoint(reference_dir / REFERENCE).state_dict
    backbone = {k.removeprefix(BACKBONE): v.clone() for k, v in state.items() if k.startswith(BACKBONE)}
    backbone["conv1.weight"] = backbone["conv1.weight"][:, :3].clone()
    backbone["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 16, 1, 1)
    backbone["final_layer.0.weight"] = torch.zeros(2048, 1024, 1, 1)
    backbone["classifier.weight"] = torch.zeros(1000, 2048)
    return backbone


def test_imagenet_initialisation_from_the_released_layout(reference_dir: Path, tmp_path: Path) -> None:
    released = _released_layout(reference_dir)
    torch.save({"model": released, "epoch": 300}, tmp_path / "hrt_tiny.pth")
    reference = load_checkpoint(reference_dir / REFERENCE)
    encoding = ClickEncoding(fusion=ClickFusion.NAIVE_CONCAT, with_prev_mask=True, with_aux_output=True)
    torch.manual_seed(0)
    model = build_hrformer(reference.network.backbone.config, encoding, hidden_dim=64)
    head_before = {k: v.clone() for k, v in model.network.head.state_dict().items()}
    loaded = load_pretrained(model, str(tmp_path / "hrt_tiny.pth"))
    ours, theirs = model.network.backbone.state_dict(), reference.network.backbone.state_dict()
    assert loaded == len(
        [k for k in ours if not k.endswith(("num_batches_tracked", "relative_position_index"))]
    )
    rgb = released["conv1.weight"]
    assert torch.equal(ours["conv1.weight"], torch.cat([rgb, rgb], dim=1))  # 3 -> 6 channels as the original
    for key, value in theirs.items():
        if key != "conv1.weight" and not key.endswith("num_batches_tracked"):
            assert torch.equal(ours[key], value), key
    assert all(torch.equal(v, model.network.head.state_dict()[k]) for k, v in head_before.items())

    del released["stage3.0.branches.2.0.attn.attn.k_proj.weight"]
    torch.save({"model": released}, tmp_path / "short.pth")
    with pytest.raises(PretrainedError, match="missing"):
        load_pretrained(model, str(tmp_path / "short.pth"))
    with pytest.raises(PretrainedError, match="missing"):  # hrt_tiny widths into hrformer_small
        load_pretrained(build_model("hrformer_small"), str(tmp_path / "hrt_tiny.pth"))


def test_shipped_config_and_a_training_step_on_the_cpu(reference_dir: Path, tmp_path: Path) -> None:
    config = load_config(resolve_config("hrformer_base"))
    assert (config.model.name, config.train.epochs, config.optim.milestones) == (
        "hrformer_base",
        15,
        (10, 15),
    )
    assert (config.optim.lr, config.model.backbone_lr_mult, config.train.batch_size) == (5e-4, 0.1, 32)
    assert build_from_config(config).arch == "hrformer_base"

    root = tmp_path / "cocolvis"
    write_cocolvis(root, voc_views((96, 128)), "train")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(
            config.data, root=str(root), crop_size=(64, 96), min_object_area=200, epoch_len=2, workers=0
        ),
        train=dataclasses.replace(config.train, epochs=1, batch_size=2),
        validation=dataclasses.replace(config.validation, every=0),
    )
    model = load_checkpoint(reference_dir / REFERENCE)  # tiny widths: a fast step
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(
            model,
            config,
            build_train_set(config, CocoLvisSource(root, "train", 0.3)),
            tmp_path / "run",
            show_progress=False,
        )
        rates = {p: group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
        assert all(rates[p] == pytest.approx(5e-5) for p in model.network.parameters())
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    with open(tmp_path / "run" / TRAIN_LOG) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"])) and float(rows[0]["instance_aux_loss"]) > 0
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert any(k.startswith("network.backbone.stage4.") for k in changed)
    assert any(k.startswith("network.head.classifier.") for k in changed)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last_checkpoint.pth")
    assert saved.original_class == ORIGINAL_CLASS and saved.network.hidden_dim == 64
