"""iSegFormer Swin (deep click fusion): exact agreement with the original code and checkpoint handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.build import build_model
from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from model.modeling.swin_backbone import SwinBlock, SwinConfig

CHECKPOINT = "isegformer_swin_tiny_deepfusion.pth"
IO_PAIR = "isegformer_swin_tiny_deepfusion_io.npz"


@pytest.fixture(scope="module")
def reference_model(reference_dir: Path):
    return load_checkpoint(reference_dir / CHECKPOINT)


@pytest.fixture(scope="module")
def io_pair(reference_dir: Path) -> dict[str, torch.Tensor]:
    data = np.load(reference_dir / IO_PAIR)
    return {name: torch.from_numpy(data[name]) for name in ("input", "points", "logits")}


def _tolerance(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, reference.abs().max().item())


def test_reference_logits_match_the_original(reference_model, io_pair) -> None:
    # Sample 0 is the reference input; sample 1 (mirrored, other clicks) must not leak into it.
    image, points = io_pair["input"], io_pair["points"]
    moved = torch.where(points[:, :, :2] >= 0, points[:, :, :2] + 17, points[:, :, :2])
    other_points = torch.cat((moved, points[:, :, 2:]), dim=2)
    with torch.no_grad():
        out = reference_model(torch.cat((image, image.flip(-1))), torch.cat((points, other_points)))
    assert out["instances_aux"] is None
    logits = out["instances"]
    assert logits.shape == (2, 1, 333, 471) and io_pair["logits"].shape == (1, 1, 333, 471)
    assert (logits[0:1] - io_pair["logits"]).abs().max().item() <= _tolerance(io_pair["logits"])
    assert (logits[1] - logits[0]).abs().max().item() > 0.1


def test_input_not_a_multiple_of_patch_or_window(reference_model, io_pair) -> None:
    crop = io_pair["input"][:, :, 70:164, 150:272]  # 94 x 122: not a multiple of the 4-px patch nor of 48
    points = io_pair["points"].clone()
    points[:, :, :2] = torch.where(
        points[:, :, :2] >= 0, points[:, :, :2] - torch.tensor([70.0, 150.0]), -1.0
    )
    assert ((points[0, :, :2] >= 0) & (points[0, :, :2] < torch.tensor([94.0, 122.0]))).all(1).any()
    with torch.no_grad():
        logits = reference_model(crop, points)["instances"]
    assert logits.shape == (1, 1, 94, 122)
    assert torch.isfinite(logits).all()

    # The network pads its input to the patch size with zeros itself: padding it beforehand is the same.
    network = reference_model.network
    rgb, coords = reference_model.normalize(crop[:, :3]), reference_model.coord_features(crop, points)
    with torch.no_grad():
        own, _ = network(rgb, coords)
        padded, _ = network(F.pad(rgb, (0, 2, 0, 2)), F.pad(coords, (0, 2, 0, 2)))
    assert own.shape == padded.shape == (1, 1, 24, 31)
    assert torch.equal(own, padded)


def test_window_padding_leaves_window_aligned_tokens_unchanged() -> None:
    torch.manual_seed(0)
    config = SwinConfig(embed_dim=16, depths=(2,), num_heads=(2,), window_size=6)
    block = SwinBlock(16, 2, window_size=6, shift=0, config=config, drop_path=0.0).eval()
    tokens = torch.randn(1, 9, 8, 16)  # 9 x 8 tokens: padded to 12 x 12 inside the block
    with torch.no_grad():
        full = block(tokens.flatten(1, 2), 9, 8, None).view(1, 9, 8, 16)
        first_window = block(tokens[:, :6, :6].flatten(1, 2), 6, 6, None).view(1, 6, 6, 16)
    assert torch.allclose(full[:, :6, :6], first_window, atol=1e-6)


def test_save_then_load_round_trip(reference_model, io_pair, reference_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "swin.pth"
    save_checkpoint(reference_model, path, {"note": "round trip"})
    reloaded = load_checkpoint(path)
    original = reference_model.state_dict()
    assert reloaded.state_dict().keys() == original.keys()
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in original.items())
    image, points = (
        io_pair["input"][:, :, 100:196, 180:276],
        io_pair["points"] - torch.tensor([100.0, 180.0, 0.0]),
    )
    with torch.no_grad():
        a = reference_model(image, points)["instances"]
        b = reloaded(image, points)["instances"]
    assert torch.equal(a, b)

    # The written file has exactly the original's keys and shapes (the original loads strictly) and params.
    saved, source = read_checkpoint(path), read_checkpoint(reference_dir / CHECKPOINT)
    assert saved.class_name == source.class_name
    assert {k: tuple(v.shape) for k, v in saved.state_dict.items()} == {
        k: tuple(v.shape) for k, v in source.state_dict.items()
    }
    for group in ("backbone_params", "head_params"):
        for name, value in source.params[group].items():
            if name != "loss_decode":
                assert saved.params[group][name] == value, (group, name)
    assert type(saved.params["head_params"]["loss_decode"]).__name__.endswith("CrossEntropyLoss")
    for name in ("use_deep_fusion", "with_prev_mask", "use_disks", "norm_radius", "use_rgb_conv"):
        assert saved.params[name] == source.params[name], name
    assert saved.metadata["note"] == "round trip"


def test_mis_shaped_weight_raises(reference_dir: Path, tmp_path: Path) -> None:
    model = load_checkpoint(reference_dir / CHECKPOINT)
    attn = model.network.backbone.layers[0].blocks[0].attn
    attn.relative_position_bias_table = torch.nn.Parameter(torch.zeros(529, 2))  # config says 1 head
    path = tmp_path / "bad_shape.pth"
    save_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="relative_position_bias_table"):
        load_checkpoint(path)


def test_corrupt_relative_position_index_raises(reference_dir: Path, tmp_path: Path) -> None:
    model = load_checkpoint(reference_dir / CHECKPOINT)
    index = model.network.backbone.layers[1].blocks[1].attn.relative_position_index
    index[0, 0] = index[0, 1]
    path = tmp_path / "bad_index.pth"
    save_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="relative_position_index"):
        load_checkpoint(path)


def _swin_backbone_parameters(config: SwinConfig) -> int:
    """Closed-form parameter count of our Swin backbone (no classifier, one LayerNorm per output)."""
    c, p = config.embed_dim, config.patch_size
    total = config.in_chans * c * p * p + c + 2 * c  # patch projection + its LayerNorm
    for stage, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
        d = c * 2**stage
        hidden = int(d * config.mlp_ratio)
        block = 2 * d + (2 * config.window_size - 1) ** 2 * heads + 3 * d * d + 3 * d + d * d + d
        block += 2 * d + d * hidden + hidden + hidden * d + d
        total += depth * block
        if stage < len(config.depths) - 1:
            total += 2 * 4 * d + 4 * d * 2 * d  # patch merging: LayerNorm(4d) + Linear(4d, 2d) without bias
        total += 2 * d  # output LayerNorm
    return total


def test_swin_base_builds_with_the_expected_size() -> None:
    # Built on the meta device: the same construction code without the cost of initialising 88M weights.
    with torch.device("meta"):
        model = build_model("swin_base")
    backbone = model.network.backbone
    config = backbone.config
    assert (config.embed_dim, config.depths, config.num_heads, config.window_size) == (
        128,
        (2, 2, 18, 2),
        (4, 8, 16, 32),
        12,
    )
    count = sum(p.numel() for p in backbone.parameters())
    assert count == _swin_backbone_parameters(config)
    # Published Swin-B (window 7) is 87.77M with its 1000-class classifier; without it, with window-12
    # bias tables and one LayerNorm per stage output (instead of one final norm) it is 86.88M.
    assert 86.8e6 < count < 86.9e6
    head = model.network.head
    assert list(head.in_channels) == [128, 256, 512, 1024] and head.channels == 256
    assert model.encoding.with_prev_mask and model.input_channels == 4


def test_swin_without_prev_mask_is_rejected() -> None:
    with pytest.raises(ValueError, match="with_prev_mask"):
        build_model("swin_tiny", with_prev_mask=False)
