"""SegFormer (MiT + all-MLP head) against the original iSegFormer code: outputs, checkpoints, variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model.build import build_model, list_models
from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from model.modeling.mit import MIT_VARIANTS, EfficientSelfAttention, MixVisionTransformer
from model.modeling.segformer import ADAPTER

REFERENCES = ["isegformer_tiny_5ch", "isegformer_tiny_6ch_prevmask"]

# Published MiT encoder sizes (3-channel input, no head; SegFormer paper / model zoo), in millions.
PUBLISHED_ENCODER_MPARAMS = {"b0": 3.3, "b1": 13.2, "b2": 24.2, "b3": 44.0, "b4": 60.8, "b5": 81.4}


def _run(model: nn.Module, npz: np.lib.npyio.NpzFile) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(npz["input"]), torch.from_numpy(npz["points"]))
    assert out["instances_aux"] is None
    return out["instances"].numpy()


def _assert_matches_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    tolerance = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(ours - ref).max()) <= tolerance


@pytest.mark.parametrize("name", REFERENCES)
def test_logits_match_original_and_survive_save_round_trip(reference_dir: Path, tmp_path: Path, name: str):
    model = load_checkpoint(reference_dir / f"{name}.pth")
    npz = np.load(reference_dir / f"{name}_io.npz")
    assert model.arch == "segformer_b0"  # embed 32, layers [2, 2, 2, 2]: the B0 layout
    assert model.input_channels == npz["input"].shape[1]
    logits = _run(model, npz)
    _assert_matches_reference(logits, npz["logits"])

    saved = tmp_path / "saved.pth"
    save_checkpoint(model, saved)
    np.testing.assert_array_equal(_run(load_checkpoint(saved), npz), logits)

    original, written = read_checkpoint(reference_dir / f"{name}.pth"), read_checkpoint(saved)
    assert written.class_name == "isegm.model.is_segformer_model.SegformerModel"
    # Same original key names and shapes, so the original's strict load_state_dict accepts the file.
    assert sorted(written.state_dict) == sorted(original.state_dict)
    for key, tensor in original.state_dict.items():
        assert written.state_dict[key].shape == tensor.shape, key
        if not key.startswith("maps_transform."):  # unused by naive concat; we write neutral values
            assert torch.equal(written.state_dict[key], tensor), key
    # Only constructor arguments the original SegformerModel/ISModel knows (its config lists them all).
    assert set(written.params) <= set(original.params)
    for key in ("backbone_params", "with_prev_mask", "use_naive_concat", "use_rgb_conv", "use_disks"):
        assert written.params[key] == original.params[key], key
    head_written, head_original = written.params["decode_head_params"], original.params["decode_head_params"]
    assert {k: v for k, v in head_written.items() if k != "loss_decode"} == {
        k: v for k, v in head_original.items() if k != "loss_decode"
    }
    assert type(head_written["loss_decode"]).foreign_name == "CrossEntropyLoss"
    assert written.params["norm_layer"] == "torch.nn.modules.batchnorm.BatchNorm2d"


def test_attention_mapping_equals_torch_multihead_attention():
    """Our q/kv split of the packed ``in_proj`` reproduces nn.MultiheadAttention, sample by sample."""
    torch.manual_seed(0)
    dim, heads, sr = 64, 2, 2
    attn = EfficientSelfAttention(dim, heads, sr_ratio=sr).eval()
    mha = nn.MultiheadAttention(dim, heads, bias=True, batch_first=True).eval()
    with torch.no_grad():
        for p in mha.parameters():
            p.normal_(0, 0.2)
        attn.q.weight.copy_(mha.in_proj_weight[:dim])
        attn.q.bias.copy_(mha.in_proj_bias[:dim])
        attn.kv.weight.copy_(mha.in_proj_weight[dim:])
        attn.kv.bias.copy_(mha.in_proj_bias[dim:])
        attn.proj.load_state_dict(mha.out_proj.state_dict())
        hw = (6, 10)
        x = torch.randn(2, hw[0] * hw[1], dim)
        reduced = attn.sr(x.transpose(1, 2).reshape(2, dim, *hw)).flatten(2).transpose(1, 2)
        kv = attn.sr_norm(reduced)
        expected = mha(x, kv, kv, need_weights=False)[0]
        torch.testing.assert_close(attn(x, hw), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(attn(x[1:], hw), expected[1:], rtol=1e-5, atol=1e-5)


def _write_original(path: Path, params: dict, state_dict: dict[str, torch.Tensor]) -> None:
    params = {**params, "decode_head_params": {**params["decode_head_params"], "loss_decode": None}}
    config = {
        "class": "isegm.model.is_segformer_model.SegformerModel",
        "params": {k: {"type": "builtin", "value": v, "specified": True} for k, v in params.items()},
    }
    torch.save({"state_dict": state_dict, "config": config}, path)


def test_checkpoint_not_matching_its_config_is_rejected(reference_dir: Path, tmp_path: Path):
    original = read_checkpoint(reference_dir / "isegformer_tiny_5ch.pth")

    wider = tmp_path / "embed64_tensors32.pth"
    params = {**original.params, "backbone_params": {**original.params["backbone_params"], "embed_dims": 64}}
    params["decode_head_params"] = {**params["decode_head_params"], "in_channels": [64, 128, 320, 512]}
    _write_original(wider, params, original.state_dict)
    with pytest.raises(CheckpointError, match="embed64_tensors32.pth.*has shape"):
        load_checkpoint(wider)

    missing = tmp_path / "missing_key.pth"
    state = {k: v for k, v in original.state_dict.items() if k != "head.fusion_conv.conv.weight"}
    _write_original(missing, original.params, state)
    with pytest.raises(CheckpointError, match=r"missing_key.pth.*missing.*network\.head\.fuse\.conv\.weight"):
        load_checkpoint(missing)

    surplus = tmp_path / "extra_block.pth"
    state = dict(original.state_dict)
    state["feature_extractor.layers.3.1.2.norm1.weight"] = torch.ones(256)
    _write_original(surplus, original.params, state)
    with pytest.raises(CheckpointError, match="extra_block.pth.*unexpected weights"):
        load_checkpoint(surplus)

    channels = tmp_path / "six_channel_config.pth"
    params = {**original.params, "with_prev_mask": True}  # 6 input channels, but the stem conv takes 5
    _write_original(channels, params, original.state_dict)
    with pytest.raises(CheckpointError, match="six_channel_config.pth.*in_channels is 5"):
        load_checkpoint(channels)


def test_variants_have_the_published_encoder_sizes():
    assert {f"segformer_{v}" for v in PUBLISHED_ENCODER_MPARAMS} <= set(list_models())
    for name, config in MIT_VARIANTS.items():
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = build_model(f"segformer_{name}")
            encoder_3ch = sum(p.numel() for p in MixVisionTransformer(config).parameters())
        # 3-channel encoder (ImageNet layout) against the published size, 1 % tolerance (rounding).
        assert encoder_3ch / 1e6 == pytest.approx(PUBLISHED_ENCODER_MPARAMS[name], rel=0.01), name
        # The registered model: 6-channel stem (3 more input channels) + 256-channel all-MLP head.
        dims, head = config.stage_dims, 256
        stem_extra = 3 * dims[0] * config.patch_sizes[0] ** 2
        head_params = sum(c * head + head for c in dims) + (len(dims) * head * head + head) + (head + 1)
        total = sum(p.numel() for p in model.parameters())
        assert total == encoder_3ch + stem_extra + head_params, name
        assert model.input_channels == 4 and model.network.encoder.config.in_channels == 6


def test_b0_forward_shapes():
    model = build_model("segformer_b0").eval()
    x = torch.randn(1, 6, 64, 96)
    with torch.no_grad():
        logits, aux = model.network(x, None)
        assert aux is None and logits.shape == (1, 1, 16, 24)  # output stride 4
        image = torch.rand(1, 4, 64, 96)
        points = torch.tensor([[[10.0, 20.0, 0.0], [-1.0, -1.0, -1.0]]])
        out = model(image, points)["instances"]
    assert out.shape == (1, 1, 64, 96) and torch.isfinite(out).all()
    five = build_model("segformer_b0", with_prev_mask=False, head_channels=128)
    assert five.network.encoder.config.in_channels == 5 and five.network.head.channels == 128
    assert ADAPTER.original_params(five)["decode_head_params"]["channels"] == 128
