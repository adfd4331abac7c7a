"""The benchmark's straightforward SegFormer computes what the original computes (same weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.benchmarks.baseline_segformer import straightforward_copy
from model.build import build_model
from model.checkpoint import load_checkpoint


def test_straightforward_twin_reproduces_reference(reference_dir: Path):
    model = load_checkpoint(reference_dir / "isegformer_tiny_6ch_prevmask.pth")
    io = np.load(reference_dir / "isegformer_tiny_6ch_prevmask_io.npz")
    twin = straightforward_copy(model)
    with torch.inference_mode():
        out = twin(torch.from_numpy(io["input"]), torch.from_numpy(io["points"]))["instances"].numpy()
    ref = io["logits"]
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_straightforward_twin_of_b0_matches_ours():
    torch.manual_seed(0)
    ours = build_model("segformer_b0", with_prev_mask=True).eval()
    twin = straightforward_copy(ours)
    image = torch.rand(1, 4, 96, 128)
    points = torch.tensor([[[40.0, 60.0, 0.0], [-1, -1, -1], [10.0, 10.0, 1.0], [-1, -1, -1]]])
    with torch.inference_mode():
        a = ours(image, points)["instances"]
        b = twin(image, points)["instances"]
    assert a.shape == (1, 1, 96, 128)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
