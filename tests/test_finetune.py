"""Fine-tuning on a user's annotations (training.finetune): split, crops, freezing, the job and its CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.build import build_model
from model.checkpoint import load_checkpoint, read_checkpoint
from model.transforms import ZoomIn
from training.config import load_config, resolve_config
from training.data.instances import InstancesSource
from training.data.pack import initial_checkpoint
from training.data.zoom_crop import ZoomCropSource, zoom_scale
from training.datasets.export import ExportDataset, held_out_split
from training.finetune import FinetuneError, finetune, freeze_encoder, frozen_encoder_names
from training.finetune_events import FinetuneEvent
from training.train import main


def write_export(
    root: Path, images: int = 5, disks: int = 2, size: int = 96, sixteen_bit: bool = False
) -> Path:
    """An app export of ``images`` pictures with ``disks`` bright disks each (instance ids 1..disks)."""
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(images):
        image = rng.integers(0, 60, (size, size), dtype=np.uint16)
        mask = np.zeros((size, size), np.uint8)
        for d in range(disks):
            centre = (int(rng.integers(15, size - 15)), int(rng.integers(15, size - 15)))
            cv2.circle(mask, centre, int(rng.integers(6, 12)), d + 1, -1)
        image[mask > 0] += 150
        if sixteen_bit:
            cv2.imwrite(str(root / "images" / f"img{i}.png"), image * 20)
        else:
            cv2.imwrite(
                str(root / "images" / f"img{i}.png"), cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_GRAY2BGR)
            )
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), mask)
    return root


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "random_lite0.pth"
    path.write_bytes(initial_checkpoint(""))
    return path


def quick_config(data_root: Path, weights: Path, minutes: float = 0.05):
    config = load_config(resolve_config("finetune"))
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, root=str(data_root), crop_size=(96, 96)),
        model=dataclasses.replace(config.model, weights=str(weights)),
        train=dataclasses.replace(config.train, batch_size=2, max_num_next_clicks=1),
        validation=dataclasses.replace(config.validation, max_clicks=3),
        finetune=dataclasses.replace(
            config.finetune, max_minutes=minutes, eval_max_objects=2, eval_with_flip=False
        ),
    )


def test_held_out_split_is_stable_order_free_and_never_empty():
    names = [f"cell_{i:03d}.png" for i in range(23)]
    train, held = held_out_split(names, 0.2)
    assert len(held) == 5 and sorted(train + held) == list(range(23))
    shuffled = list(reversed(names))
    _, held_again = held_out_split(shuffled, 0.2)
    assert sorted(shuffled[i] for i in held_again) == sorted(names[i] for i in held)
    assert len(held_out_split(names[:2], 0.2)[1]) == 1  # at least one, never all
    assert held_out_split(names[:1], 0.2) == ([0], [])  # one image: nothing to hold out


def test_zoom_crops_show_an_object_at_the_predictor_scale(tmp_path):
    root = write_export(tmp_path / "export", images=1, disks=1, size=300)
    source = InstancesSource(ExportDataset(root))
    side = int(np.ptp(np.nonzero(source.load(0, np.random.default_rng(0)).layers[:, :, 0])[0])) + 1
    expected = side * zoom_scale(side, ZoomIn())  # ZoomIn: the 200-px minimum window -> 400 px, 2x
    crops = ZoomCropSource(source, (128, 128), shift=0.0)
    for seed in range(5):
        crop = crops.load(0, np.random.default_rng(seed))
        assert crop.image.shape == (128, 128, 3) and len(crop.objects) == 1
        rows = np.nonzero(crop.object_mask(next(iter(crop.objects))) == 1)[0]
        assert 0.75 * expected <= np.ptp(rows) + 1 <= 1.3 * expected
    assert expected > 1.8 * side  # the point: small objects are seen enlarged, as the predictor shows them


def test_zoom_crops_of_a_huge_image_keep_windows_not_the_image(tmp_path):
    """A 6000x4500 image with a 1000-px object and a 13-px one: each is cut once into a window sized by
    what its crops can show (the big one stored shrunk), and crops show both at the ZoomIn scale."""
    mask = np.zeros((4500, 6000), np.uint16)
    cv2.rectangle(mask, (500, 400), (1499, 999), 1, -1)  # 1000 x 600
    cv2.circle(mask, (5000, 4000), 6, 2, -1)  # 13 x 13
    image = np.where(mask[:, :, None] > 0, 200, 40).astype(np.uint8).repeat(3, axis=2)
    (tmp_path / "export" / "images").mkdir(parents=True)
    (tmp_path / "export" / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "export" / "images" / "huge.png"), image)
    cv2.imwrite(str(tmp_path / "export" / "masks" / "huge.png"), mask)
    crops = ZoomCropSource(InstancesSource(ExportDataset(tmp_path / "export")), (512, 512), shift=0.0)
    assert len(crops) == 2 and crops.windows[0].factor < 0.5 and crops.windows[1].factor == 1.0
    stored = sum(w.image.nbytes + w.mask.nbytes for w in crops.windows)
    assert stored < image.nbytes / 20
    for index, side in enumerate((1000, 13)):
        expected = side * zoom_scale(side, ZoomIn())
        for seed in range(3):
            crop = crops.load(index, np.random.default_rng(seed))
            cols = np.nonzero(crop.object_mask(1) == 1)[1]
            assert crop.image.shape == (512, 512, 3) and len(crop.objects) == 1
            assert 0.75 * expected <= np.ptp(cols) + 1 <= 1.3 * expected
            assert abs(0.5 * (cols.min() + cols.max()) - 255.5) < 3  # centred: no shift asked for


def test_sixteen_bit_exports_are_stretched_like_the_app(tmp_path):
    root = write_export(tmp_path / "export", images=1, sixteen_bit=True)
    image = ExportDataset(root)[0].image
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_frozen_encoder_trains_click_input_deepest_stage_and_head_and_keeps_norm_statistics(base_weights):
    model = load_checkpoint(base_weights)
    head_only = freeze_encoder(model, trainable_stages=0)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "network.encoder.conv_stem.weight" in names and "network.head.classifier.weight" in names
    assert not any(n.startswith("network.encoder.blocks.") for n in names)
    assert head_only < sum(p.numel() for p in model.parameters()) / 5
    model = load_checkpoint(base_weights)
    with_last_stage = freeze_encoder(model, trainable_stages=1)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[3] for n in names if n.startswith("network.encoder.blocks.")} == {"5", "6"}
    assert with_last_stage > 3 * head_only
    model.train()
    for norm in (model.network.encoder.blocks[3][0].bn1, model.network.encoder.blocks[6][0].bn1):
        before = norm.running_mean.clone()
        model(torch.rand(2, 4, 64, 64), torch.full((2, 2, 3), -1.0))
        assert torch.equal(before, norm.running_mean) and not norm.training


@pytest.mark.parametrize("arch", ["segformer_b0", "hrnet18s_ocr48", "swin_tiny", "hrformer_small"])
def test_every_family_names_its_encoder_stages_for_fine_tuning(arch):
    model = build_model(arch)
    everything = {n for n, _ in model.named_parameters()}
    all_stages = frozen_encoder_names(model, 0)
    but_last = frozen_encoder_names(model, 1)
    head = {n for n in everything if ".head." in n or n.startswith("maps_transform")}
    assert not all_stages & head and but_last < all_stages  # the head always trains, the deepest stage too
    prefixes = tuple(f"network.{prefix}" for prefix in model.network.input_prefixes)
    input_layer = {n for n in everything if prefixes and n.startswith(prefixes)}
    assert not input_layer & all_stages
    assert everything == all_stages | head | input_layer  # a stage's, the input's or the head's


def test_finetune_trains_within_budget_and_measures_the_held_out_images(tmp_path, base_weights):
    root = write_export(tmp_path / "export")
    events: list[FinetuneEvent] = []
    result = finetune(quick_config(root, base_weights), tmp_path / "out", events.append, "disks")
    assert not set(result["images"]["train"]) & set(result["images"]["held_out"])
    assert len(result["images"]["held_out"]) == 1 and result["objects"]["train"] == 8
    assert result["steps"] > 0 and result["minutes"] < 0.05 + 0.5  # budget + the step in progress
    for part in ("before", "after"):
        assert {"noc85", "noc90", "miou@1", "miou@3"} <= set(result[part]) and result[part]["objects"] == 2
    saved = read_checkpoint(tmp_path / "out" / "checkpoints" / "last_checkpoint.pth")
    assert saved.metadata["finetune"]["project"] == "disks"
    assert json.loads((tmp_path / "out" / "finetune.json").read_text())["after"] == result["after"]
    assert "| NoC@90 |" in (tmp_path / "out" / "finetune.md").read_text()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and "step" in kinds
    step = next(e for e in events if e.kind == "step")
    assert step.samples == 2 and step.loss > 0 and 0 <= step.remaining_s <= 3.0


def test_a_project_of_mixed_sizes_depths_and_channels_trains(tmp_path, base_weights):
    """Grey 8-bit, 16-bit, colour JPEG and a 5000-px-wide image in one export: all read, cut and train."""
    root = tmp_path / "export"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(5)
    shapes = {"grey": (90, 120), "deep": (200, 150), "colour": (128, 128), "wide": (600, 5000)}
    for name, (height, width) in shapes.items():
        mask = np.zeros((height, width), np.uint8)
        for d in range(2):
            centre = (int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20)))
            cv2.circle(mask, centre, 10, d + 1, -1)
        grey = np.where(mask > 0, 180, 30).astype(np.uint8)
        if name == "grey":
            cv2.imwrite(str(root / "images" / f"{name}.png"), grey)
        elif name == "deep":
            cv2.imwrite(str(root / "images" / f"{name}.png"), grey.astype(np.uint16) * 250)
        else:
            suffix = ".jpg" if name == "colour" else ".png"
            cv2.imwrite(str(root / "images" / f"{name}{suffix}"), cv2.merge([grey, grey // 2, grey]))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    result = finetune(quick_config(root, base_weights), tmp_path / "out")
    assert len(result["images"]["train"]) == 3 and result["objects"]["train"] == 6 and result["steps"] > 0
    assert result["before"]["objects"] == result["after"]["objects"] == 2


def test_cli_writes_checkpoint_and_table_and_progress_lines(tmp_path, base_weights, capsys):
    root = write_export(tmp_path / "export", images=3)
    out = tmp_path / "run"
    code = main(["finetune", "--data-root", str(root), "--output", str(out), "--weights", str(base_weights),
                 "--max-minutes", "0.02", "--events", "--batch-size", "2"])  # fmt: skip
    assert code == 0
    assert load_checkpoint(out / "checkpoints" / "last_checkpoint.pth").arch == "efficientnet_lite0_segformer"
    assert json.loads((out / "finetune.json").read_text())["before"]["objects"] >= 1
    lines = [FinetuneEvent.from_line(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(e is not None for e in lines) and lines[-1].kind == "done"


def test_too_few_objects_is_one_message_with_the_number(tmp_path, base_weights, capsys):
    root = write_export(tmp_path / "export", images=3, disks=1)
    code = main(["finetune", "--data-root", str(root), "--output", str(tmp_path / "run"),
                 "--weights", str(base_weights), "--events"])  # fmt: skip
    assert code == 2
    error = FinetuneEvent.from_line(capsys.readouterr().out.splitlines()[-1])
    assert (
        error.kind == "error"
        and error.message.startswith("3 finished objects")
        and "at least 4" in error.message
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_one_annotated_image_is_one_message(tmp_path, base_weights):
    root = write_export(tmp_path / "export", images=1, disks=6)
    with pytest.raises(FinetuneError, match="1 annotated image: fine-tuning needs at least 2"):
        finetune(quick_config(root, base_weights), tmp_path / "run")
