"""The inference-only fast paths compute what the plain layers compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.modeling.mit import MixFFN, nchw_to_nlc, nlc_to_nchw, patchify_conv
from model.modeling.segformer_head import SegFormerHead


@pytest.mark.parametrize("hw", [(16, 24), (13, 21), (8, 8)])
def test_patchify_conv_equals_strided_conv(hw: tuple[int, int]):
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 12, kernel_size=4, stride=4)
    tokens = torch.randn(2, hw[0] * hw[1], 12)
    expected = nchw_to_nlc(conv(nlc_to_nchw(tokens, hw)))
    out, out_hw = patchify_conv(tokens, hw, conv)
    assert out_hw == (hw[0] // 4, hw[1] // 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_fused_head_equals_plain_head(batch_norm: bool):
    torch.manual_seed(2)
    head = SegFormerHead([8, 16, 24], channels=12, dropout_ratio=0.0, batch_norm=batch_norm)
    for module in head.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    head.eval()
    feats = [torch.randn(2, 8, 20, 28), torch.randn(2, 16, 10, 14), torch.randn(2, 24, 5, 7)]
    feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]  # as the encoder gives them
    with torch.no_grad():
        plain = head.forward_plain(feats)
        fused = head(feats)
    assert fused.shape == plain.shape == (2, 1, 20, 28)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)


def test_channels_first_ffn_equals_token_ffn():
    torch.manual_seed(3)
    ffn = MixFFN(16, 64)  # dropout 0: train mode is the plain token-major path
    hw = (9, 14)
    tokens = torch.randn(2, hw[0] * hw[1], 16)
    with torch.no_grad():
        expected = ffn.train()(tokens, hw)
        torch.testing.assert_close(ffn.eval()(tokens, hw), expected, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ffn(tokens, hw)
    assert low.shape == expected.shape
    assert (low.float() - expected).abs().max() < 0.05 * expected.abs().max()
