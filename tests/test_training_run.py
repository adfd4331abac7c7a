"""End-to-end training on a small COCO+LVIS-layout dataset made from real VOC masks: exact resume,
the CLI (COCO+LVIS and app export), and a 2-process DistributedDataParallel run on gloo."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from _training_data import voc_views, write_cocolvis

from model.checkpoint import load_checkpoint, read_checkpoint
from training.config import config_from_dict
from training.data import CocoLvisSource
from training.train import build_from_config, build_train_set, main
from training.trainer import RESUME_FILE, TRAIN_LOG, VAL_LOG, Trainer

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "name": "segformer_custom",
    "head_channels": 16,
    "mit": {"embed_dims": 8, "num_layers": [1, 1, 1, 1], "drop_path_rate": 0.1},
}


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    views = voc_views((96, 128))
    root = tmp_path_factory.mktemp("cocolvis")
    write_cocolvis(root, views, "train")
    write_cocolvis(root, views[:2], "val")
    return root


def _config(root: Path, **train: object) -> dict:
    return {
        "model": TINY_MODEL,
        "data": {
            "root": str(root),
            "crop_size": [64, 64],
            "min_object_area": 200,
            "epoch_len": 8,
            "workers": 0,
        },
        "train": {"epochs": 2, "batch_size": 4, "checkpoint_interval": 1, **train},
        "validation": {"every": 0},
    }


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _losses(path: Path) -> list[float]:
    with open(path / TRAIN_LOG) as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh)]


def _trainer(root: Path, out: Path, seed: int, **train: object) -> Trainer:
    cfg = config_from_dict(_config(root, **train))
    torch.manual_seed(seed)
    model = build_from_config(cfg)
    return Trainer(
        model, cfg, build_train_set(cfg, CocoLvisSource(root, "train", 0.3)), out, show_progress=False
    )


def test_resume_repeats_the_uninterrupted_run(dataset_root: Path, tmp_path: Path) -> None:
    full = _trainer(dataset_root, tmp_path / "full", seed=0)
    full.fit()
    reference = _losses(tmp_path / "full")
    assert len(reference) == 4  # 2 epochs x (8 items / batch 4)

    # interrupted after step 3 (in the middle of epoch 2), with a resume file written every step
    crashed = _trainer(dataset_root, tmp_path / "crash", seed=0, resume_every_steps=1)
    original_step = crashed.train_step

    def step_then_crash(batch: dict) -> dict:
        if crashed.global_step == 3:
            raise KeyboardInterrupt
        return original_step(batch)

    crashed.train_step = step_then_crash
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert _losses(tmp_path / "crash") == reference[:3]

    resumed = _trainer(dataset_root, tmp_path / "resumed", seed=123)  # different initial weights
    resumed.load_resume(tmp_path / "crash" / RESUME_FILE)
    assert (resumed.epoch, resumed.step_in_epoch, resumed.global_step) == (1, 1, 3)
    resumed.fit()
    assert _losses(tmp_path / "resumed") == reference[3:]  # the same next-step loss, bit for bit
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert resumed.scheduler.last_epoch == full.scheduler.last_epoch == 2

    # the resume file holds plain tensors and containers only
    state = torch.load(tmp_path / "crash" / RESUME_FILE, weights_only=True)
    assert state["global_step"] == 3 and "optimizer" in state and "rng" in state


def test_time_budget_stops_cleanly_and_segments_add_up_to_the_full_run(
    dataset_root: Path, tmp_path: Path
) -> None:
    """``fit(max_seconds=...)`` (``--max-minutes``) ends after the step in progress with the weights and
    an exact resume state; segments resumed one after another give the uninterrupted run bit for bit."""
    full = _trainer(dataset_root, tmp_path / "full", seed=0)
    full.fit()
    reference = _losses(tmp_path / "full")

    segments = 0
    out = tmp_path / "segments"
    while True:
        trainer = _trainer(dataset_root, out, seed=0 if segments == 0 else 100 + segments)
        if (out / RESUME_FILE).is_file():
            trainer.load_resume(out / RESUME_FILE)
        trainer.fit(max_seconds=0.0)  # the budget is spent at once: exactly one step per segment
        segments += 1
        if not trainer.stopped_early:
            break
        assert (out / "checkpoints" / "last_checkpoint.pth").is_file()
        assert torch.load(out / RESUME_FILE, weights_only=True)["global_step"] == segments
    assert segments == 4  # steps 1, 2, 3 stopped by the budget; the last segment finishes the run
    assert _losses(out) == reference
    pairs = zip(full.model.state_dict().items(), trainer.model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name


def _write_toml(path: Path, values: dict) -> Path:
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, entries in values.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in entries.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_trains_validates_and_writes_original_checkpoints(dataset_root: Path, tmp_path: Path) -> None:
    values = _config(Path(""), epochs=1)
    values["validation"] = {"every": 1, "max_objects": 3, "max_clicks": 3, "iou_thresholds": [0.5, 0.8]}
    config = _write_toml(tmp_path / "tiny.toml", values)
    out = tmp_path / "run"
    code = main(
        [
            str(config),
            "--data-root",
            str(dataset_root),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    assert len(_losses(out)) == 2
    with open(out / VAL_LOG) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and float(rows[0]["objects"]) == 3 and 1 <= float(rows[0]["noc50"]) <= 3
    for name in ("last_checkpoint.pth", "001.pth"):
        checkpoint = read_checkpoint(out / "checkpoints" / name)
        assert checkpoint.class_name == "isegm.model.is_segformer_model.SegformerModel"
    model = load_checkpoint(out / "checkpoints" / "last_checkpoint.pth")
    assert model.with_prev_mask and model.input_channels == 4
    # resuming a finished run with more epochs continues at step 2
    code = main(
        [
            str(config),
            "--data-root",
            str(dataset_root),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--resume",
            str(out / RESUME_FILE),
            "--epochs",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0 and len(_losses(out)) == 4
    assert (out / "checkpoints" / "002.pth").is_file()


def test_cli_trains_on_app_export_and_reports_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    export = tmp_path / "export"
    (export / "images").mkdir(parents=True)
    (export / "masks").mkdir()
    for index, (image, instances) in enumerate(voc_views((96, 128))):
        cv2.imwrite(str(export / "images" / f"img{index}.png"), image[:, :, ::-1])
        cv2.imwrite(str(export / "masks" / f"img{index}.png"), instances.astype("uint8"))
    values = _config(Path(""), epochs=1)
    values["validation"] = {"every": 1, "max_objects": 2, "max_clicks": 2}
    values["data"]["val_fraction"] = 0.25
    config = _write_toml(tmp_path / "tiny.toml", values)
    out = tmp_path / "run"
    code = main(
        [
            str(config),
            "--dataset",
            "app-export",
            "--data-root",
            str(export),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0 and len(_losses(out)) == 2 and (out / VAL_LOG).is_file()

    # fine-tuning starts from the given checkpoint: with lr 0 the weights come out unchanged
    values["optim"] = {"lr": 0.0}
    frozen = _write_toml(tmp_path / "frozen.toml", values)
    start = out / "checkpoints" / "last_checkpoint.pth"
    code = main(
        [
            str(frozen),
            "--dataset",
            "app-export",
            "--data-root",
            str(export),
            "--output",
            str(tmp_path / "tuned"),
            "--weights",
            str(start),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    before = read_checkpoint(start).state_dict
    after = read_checkpoint(tmp_path / "tuned" / "checkpoints" / "last_checkpoint.pth").state_dict
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    code = main(
        [
            str(frozen),
            "--dataset",
            "app-export",
            "--data-root",
            str(export),
            "--output",
            str(tmp_path / "tuned"),
            "--weights",
            str(tmp_path / "none.pth"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2 and "none.pth" in capsys.readouterr().err

    code = main(
        [
            str(config),
            "--dataset",
            "cocolvis",
            "--data-root",
            str(tmp_path / "missing"),
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 2 and "split folder not found" in capsys.readouterr().err
    values["train"]["no_such_key"] = 1
    code = main([str(_write_toml(tmp_path / "bad.toml", values)), "--data-root", str(export)])
    assert code == 2 and "unknown keys ['no_such_key']" in capsys.readouterr().err


def test_cli_trains_on_sbd_layout(tmp_path: Path) -> None:
    import scipy.io

    sbd = tmp_path / "SBD"
    (sbd / "img").mkdir(parents=True)
    (sbd / "inst").mkdir()
    names = []
    for index, (image, instances) in enumerate(voc_views((96, 128))):
        names.append(f"2008_{index:06d}")
        cv2.imwrite(str(sbd / "img" / f"{names[-1]}.jpg"), image[:, :, ::-1])
        scipy.io.savemat(str(sbd / "inst" / f"{names[-1]}.mat"), {"GTinst": {"Segmentation": instances}})
    (sbd / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (sbd / "val.txt").write_text(names[3] + "\n")
    values = _config(Path(""), epochs=1)
    values["validation"] = {"every": 1, "max_objects": 2, "max_clicks": 2}
    config = _write_toml(tmp_path / "tiny.toml", values)
    out = tmp_path / "run"
    code = main(
        [
            str(config),
            "--dataset",
            "sbd",
            "--data-root",
            str(sbd),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0 and len(_losses(out)) == 2
    with open(out / VAL_LOG) as fh:
        assert float(next(csv.DictReader(fh))["objects"]) == 2


def test_torchrun_two_processes_gloo(dataset_root: Path, tmp_path: Path) -> None:
    values = _config(Path(""), epochs=1)
    config = _write_toml(tmp_path / "tiny.toml", values)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training.train",
        str(config),
        "--data-root",
        str(dataset_root),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    # 8 items per epoch, global batch 4 = 2 per process -> 2 steps, logged once (rank 0)
    assert len(_losses(out)) == 2
    assert (out / "checkpoints" / "last_checkpoint.pth").is_file()
    state = torch.load(out / RESUME_FILE, weights_only=True)
    assert state["world_size"] == 2 and state["global_step"] == 2
