"""Issue 23 (reliability, round 3): two instances on one folder, exports that check the autosaves they
trust, checkpoints refused before they allocate, hostile files and settings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from isegformer_app.state.autosave import read_sidecar
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.sidecar_codec import write_sidecar


def _photo(path, h: int, w: int, value: int = 90) -> None:
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _annotate(doc: Document, y0: int, y1: int, x0: int, x1: int, label: str = "object") -> None:
    prob = np.zeros(doc.shape, np.float32)
    prob[y0:y1, x0:x1] = 1.0
    doc.add_click((y0 + y1) // 2, (x0 + x1) // 2, True)
    doc.set_prediction(list(doc.clicks), prob)
    assert doc.finish_object(label, (200, 10, 10)) is not None


def _annotated_folder(tmp_path, n: int = 2):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        _photo(src / f"img{i}.png", 60, 80, value=i)
    project = Project.from_path(src)
    for i in range(n):
        doc = project.open_index(i)
        _annotate(doc, 5, 30, 10, 40)
    project.save()
    return src, project


# ------------------------------------------------------------------ 2: export checks autosave vs image
def test_export_skips_an_image_replaced_by_another_of_another_size(tmp_path) -> None:
    src, project = _annotated_folder(tmp_path)
    project.open_index(0)  # img1 is exported from its autosave
    _photo(src / "img1.png", 100, 120, value=7)  # another photo under the same name
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1
    assert len(summary.skipped) == 1 and summary.skipped[0].startswith("img1.png: ")
    assert "different image" in summary.skipped[0] or "was made for" in summary.skipped[0]
    assert not (tmp_path / "out" / "masks" / "img1.png").exists()


def test_export_skips_an_image_replaced_by_another_of_the_same_size(tmp_path) -> None:
    src, _project = _annotated_folder(tmp_path)
    _photo(src / "img1.png", 60, 80, value=99)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and summary.skipped[0].startswith("img1.png: ")
    assert "different image" in summary.skipped[0]


@pytest.mark.parametrize("full_size", [[0, 0], [-5, 80], [200000, 200000]])
def test_export_ignores_a_hostile_full_size_in_an_autosave(tmp_path, full_size) -> None:
    src, _project = _annotated_folder(tmp_path)
    sidecar = Project.from_path(src).sidecar_for(src / "img1.png")
    data = read_sidecar(sidecar)
    meta = dict(data.meta, full_size=full_size)
    arrays = {"masks": np.packbits(data.masks, axis=-1), **data.arrays}
    write_sidecar(sidecar, meta, arrays)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 2, summary.skipped  # the size comes from the image itself
    assert read_png(tmp_path / "out" / "masks" / "img1.png").shape == (60, 80)


def test_export_skips_an_image_that_is_gone_or_unreadable(tmp_path) -> None:
    src, _project = _annotated_folder(tmp_path)
    (src / "img1.png").write_bytes(b"not a png")
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and summary.skipped[0].startswith("img1.png: ")


# ------------------------------------------------------------- 3: checkpoints refused before they allocate
_HUGE_CONFIGS = """
import resource, sys, time
import torch
from model.build import build_model
from model.checkpoint import (CheckpointError, _OriginalPickleModule, _RestrictedPickleModule,
                              load_checkpoint, save_checkpoint)
folder = sys.argv[1]
save_checkpoint(build_model("segformer_b0"), f"{folder}/b0.pth")
raw = torch.load(f"{folder}/b0.pth", weights_only=False, pickle_module=_RestrictedPickleModule)
cases = {"wide": ("backbone_params", "embed_dims", 20000),
         "deep": ("backbone_params", "num_layers", [10**6, 2, 2, 2]),
         "negative": ("backbone_params", "embed_dims", -32), "head": ("decode_head_params", "channels", -256)}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name, (group, key, value) in cases.items():
    params = raw["config"]["params"]
    old = params[group]["value"][key]
    params[group]["value"][key] = value
    torch.save(raw, f"{folder}/{name}.pth", pickle_module=_OriginalPickleModule)
    params[group]["value"][key] = old
    start = time.perf_counter()
    try:
        load_checkpoint(f"{folder}/{name}.pth")
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = "CheckpointError " + str(exc).replace(chr(10), " ")
    except BaseException as exc:
        outcome = f"{type(exc).__name__}"
    print(name, f"{time.perf_counter() - start:.2f}", outcome)
print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_checkpoint_with_absurd_sizes_is_refused_before_anything_is_built(tmp_path) -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _HUGE_CONFIGS, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    for name in ("wide", "deep", "negative", "head"):
        seconds, outcome = lines[name].split(" ", 1)
        assert outcome.startswith("CheckpointError") and f"{name}.pth" in outcome, (name, outcome)
        assert float(seconds) < 10, (name, seconds)
    assert float(lines["grew_mb"]) < 300, lines["grew_mb"]  # a 20000-wide b0 alone needs gigabytes
