"""Fine-tuning on a user's annotations (training.finetune): split, crops, freezing, the job and its CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.transforms import ZoomIn
from training.config import load_config, resolve_config
from training.data.instances import InstancesSource
from training.data.pack import initial_checkpoint
from training.data.zoom_crop import ZoomCropSource, zoom_scale
from training.datasets.export import ExportDataset, held_out_split
from training.finetune import FinetuneError, finetune, freeze_encoder
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


def test_sixteen_bit_exports_are_stretched_like_the_app(tmp_path):
    root = write_export(tmp_path / "export", images=1, sixteen_bit=True)
    image = ExportDataset(root)[0].image
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_frozen_encoder_trains_click_input_and_head_and_keeps_norm_statistics(base_weights):
    model = load_checkpoint(base_weights)
    trainable = freeze_encoder(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "network.encoder.conv_stem.weight" in names and "network.head.classifier.weight" in names
    assert not any(n.startswith("network.encoder.blocks.") for n in names)
    assert trainable < sum(p.numel() for p in model.parameters()) / 5
    model.train()
    block_norm = model.network.encoder.blocks[3][0].bn1
    before = block_norm.running_mean.clone()
    model(torch.rand(2, 4, 64, 64), torch.full((2, 2, 3), -1.0))
    assert torch.equal(before, block_norm.running_mean) and not block_norm.training


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
