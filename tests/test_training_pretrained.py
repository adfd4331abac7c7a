"""MiT ImageNet weights in the official (NVlabs) and mmseg namings, mapped onto our encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.modeling.interactive import ClickEncoding
from model.modeling.mit import MiTConfig
from model.modeling.segformer import build_segformer
from training.pretrained import PretrainedError, load_mit_pretrained

MIT = dict(
    embed_dims=4,
    num_layers=(1, 2),
    num_heads=(1, 2),
    patch_sizes=(7, 3),
    strides=(4, 2),
    sr_ratios=(2, 1),
    out_indices=(0, 1),
)


def _model(with_prev_mask: bool):
    encoding = ClickEncoding(with_prev_mask=with_prev_mask)
    return build_segformer(
        MiTConfig(**MIT, in_channels=3 + encoding.coord_channels), encoding, head_channels=8
    )


def _official_state() -> dict[str, torch.Tensor]:
    """A synthetic NVlabs MiT state dict (linears for the FFN, separate q/kv), random values."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    state: dict[str, torch.Tensor] = {}
    in_ch = 3
    for s, (depth, heads, patch, sr) in enumerate(zip((1, 2), (1, 2), (7, 3), (2, 1), strict=True), start=1):
        dim = 4 * heads
        state[f"patch_embed{s}.proj.weight"] = rand(dim, in_ch, patch, patch)
        state[f"patch_embed{s}.proj.bias"] = rand(dim)
        state[f"patch_embed{s}.norm.weight"], state[f"patch_embed{s}.norm.bias"] = rand(dim), rand(dim)
        for b in range(depth):
            p = f"block{s}.{b}."
            for norm in ("norm1", "norm2"):
                state[p + f"{norm}.weight"], state[p + f"{norm}.bias"] = rand(dim), rand(dim)
            state[p + "attn.q.weight"], state[p + "attn.q.bias"] = rand(dim, dim), rand(dim)
            state[p + "attn.kv.weight"], state[p + "attn.kv.bias"] = rand(2 * dim, dim), rand(2 * dim)
            state[p + "attn.proj.weight"], state[p + "attn.proj.bias"] = rand(dim, dim), rand(dim)
            if sr > 1:
                state[p + "attn.sr.weight"], state[p + "attn.sr.bias"] = rand(dim, dim, sr, sr), rand(dim)
                state[p + "attn.norm.weight"], state[p + "attn.norm.bias"] = rand(dim), rand(dim)
            state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"] = rand(4 * dim, dim), rand(4 * dim)
            state[p + "mlp.dwconv.dwconv.weight"] = rand(4 * dim, 1, 3, 3)
            state[p + "mlp.dwconv.dwconv.bias"] = rand(4 * dim)
            state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"] = rand(dim, 4 * dim), rand(dim)
        state[f"norm{s}.weight"], state[f"norm{s}.bias"] = rand(dim), rand(dim)
        in_ch = dim
    state["head.weight"], state["head.bias"] = rand(1000, 8), rand(1000)
    return state


def _to_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mmseg ``mit2mmseg`` conversion of an official state dict, written out independently."""
    out = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        if key.startswith("patch_embed"):
            s = int(key[len("patch_embed")]) - 1
            out[f"layers.{s}.0." + key.split(".", 1)[1].replace("proj.", "projection.")] = value
        elif key.startswith("norm"):
            out[f"layers.{int(key[4]) - 1}.2.{key.split('.', 1)[1]}"] = value
        else:
            stage, block, rest = key.split(".", 2)
            prefix = f"layers.{int(stage[5:]) - 1}.1.{block}."
            if rest.startswith("attn.q."):
                kind = rest.rsplit(".", 1)[1]
                kv = state[key.replace("attn.q.", "attn.kv.")]
                out[prefix + f"attn.attn.in_proj_{kind}"] = torch.cat([value, kv])
            elif rest.startswith("attn.kv."):
                continue
            elif rest.startswith("attn.proj."):
                out[prefix + "attn.attn.out_proj." + rest.rsplit(".", 1)[1]] = value
            elif rest.startswith("mlp.fc1.") or rest.startswith("mlp.fc2."):
                layer = "0" if "fc1" in rest else "4"
                v = value[:, :, None, None] if value.dim() == 2 else value
                out[prefix + f"ffn.layers.{layer}." + rest.rsplit(".", 1)[1]] = v
            elif rest.startswith("mlp.dwconv.dwconv."):
                out[prefix + "ffn.layers.1." + rest.rsplit(".", 1)[1]] = value
            else:
                out[prefix + rest] = value
    return out


def _check_loaded(model, official: dict[str, torch.Tensor], in_channels: int) -> None:
    enc = dict(model.network.encoder.named_parameters())
    rgb = official["patch_embed1.proj.weight"]
    stem = enc["stages.0.patch_embed.projection.weight"].detach()
    assert stem.shape[1] == in_channels
    # the RGB kernel, then copies of it for the extra channels (iSegFormer v3: cat([w, w]))
    assert torch.equal(stem[:, :3], rgb)
    assert torch.equal(stem[:, 3:], torch.cat([rgb, rgb], 1)[:, 3:in_channels])
    assert torch.equal(enc["stages.1.blocks.1.attn.q.weight"], official["block2.1.attn.q.weight"])
    assert torch.equal(enc["stages.1.blocks.1.attn.kv.bias"], official["block2.1.attn.kv.bias"])
    assert torch.equal(enc["stages.0.blocks.0.attn.sr_norm.weight"], official["block1.0.attn.norm.weight"])
    assert torch.equal(
        enc["stages.0.blocks.0.ffn.fc1.weight"][:, :, 0, 0], official["block1.0.mlp.fc1.weight"]
    )
    assert torch.equal(
        enc["stages.1.blocks.0.ffn.dwconv.weight"], official["block2.0.mlp.dwconv.dwconv.weight"]
    )
    assert torch.equal(enc["stages.1.norm.bias"], official["norm2.bias"])


@pytest.mark.parametrize("naming", ["official", "mmseg"])
@pytest.mark.parametrize("with_prev_mask", [True, False])
def test_loads_both_namings(tmp_path: Path, naming: str, with_prev_mask: bool) -> None:
    official = _official_state()
    state = official if naming == "official" else {"state_dict": _to_mmseg(official)}
    torch.save(state, tmp_path / "mit.pth")
    model = _model(with_prev_mask)
    head_before = {k: v.clone() for k, v in model.network.head.state_dict().items()}
    assert load_mit_pretrained(model, tmp_path / "mit.pth") == len(model.network.encoder.state_dict())
    _check_loaded(model, official, 6 if with_prev_mask else 5)
    assert all(torch.equal(v, model.network.head.state_dict()[k]) for k, v in head_before.items())


def test_official_and_mmseg_give_identical_encoders(tmp_path: Path) -> None:
    official = _official_state()
    torch.save(official, tmp_path / "a.pth")
    torch.save(_to_mmseg(official), tmp_path / "b.pth")
    torch.manual_seed(0)
    a = _model(True).eval()
    torch.manual_seed(0)
    b = _model(True).eval()  # same head weights; encoders differ until loaded
    load_mit_pretrained(a, tmp_path / "a.pth")
    load_mit_pretrained(b, tmp_path / "b.pth")
    x = torch.rand(1, 4, 64, 64)
    pts = torch.tensor([[[20.0, 30.0, 0.0], [-1.0, -1.0, -1.0]]])
    assert torch.allclose(a(x, pts)["instances"], b(x, pts)["instances"], atol=1e-6)


def test_wrong_variant_and_unknown_naming_are_clear_errors(tmp_path: Path) -> None:
    official = _official_state()
    del official["block2.1.attn.q.weight"]
    torch.save(official, tmp_path / "short.pth")
    with pytest.raises(PretrainedError, match="missing"):
        load_mit_pretrained(_model(True), tmp_path / "short.pth")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PretrainedError, match="unknown MiT naming"):
        load_mit_pretrained(_model(True), tmp_path / "other.pth")
    with pytest.raises(PretrainedError, match="not found"):
        load_mit_pretrained(_model(True), tmp_path / "absent.pth")
