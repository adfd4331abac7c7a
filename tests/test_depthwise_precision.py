"""Depth-wise convolutions: bf16 forward, float32 backward while training under CPU autocast."""

from __future__ import annotations

import copy

import torch
from timm.layers import Conv2dSame
from torch import nn

from training.depthwise_precision import is_depthwise, train_depthwise_in_float32


def _bf16_exact(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random values that bf16 holds exactly, so fp32 and bf16 forwards see the same numbers."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(torch.bfloat16).float()


def _network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 1),
        nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=True),
        nn.BatchNorm2d(16),
        Conv2dSame(16, 16, 3, stride=2, groups=16, bias=False),
        nn.ReLU6(),
        nn.Conv2d(16, 4, 3, padding=1, groups=4),  # grouped, not depth-wise
    )


def test_only_depthwise_convolutions_change_and_the_state_dict_stays() -> None:
    network = _network()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    assert [is_depthwise(m) for m in network] == [False, True, False, True, False, False]
    assert train_depthwise_in_float32(network) == 2
    assert train_depthwise_in_float32(network) == 2  # twice: nothing more
    assert type(network[0]) is nn.Conv2d and type(network[5]) is nn.Conv2d
    assert isinstance(network[3], Conv2dSame) and type(network[3]) is not Conv2dSame
    after = network.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], before[name]) for name in before)
    clone = copy.deepcopy(network)
    assert type(clone[1]) is type(network[1]) and clone[1].weight is not network[1].weight


def test_forward_is_the_autocast_forward_and_gradients_are_float32_ones() -> None:
    x = _bf16_exact((2, 16, 12, 12), seed=1)
    plain = nn.Conv2d(16, 16, 5, padding=2, groups=16)
    with torch.no_grad():
        plain.weight.copy_(_bf16_exact(tuple(plain.weight.shape), seed=2))
        plain.bias.copy_(_bf16_exact(tuple(plain.bias.shape), seed=3))
    converted = copy.deepcopy(plain)
    train_depthwise_in_float32(converted)

    def run(conv: nn.Module, autocast: bool) -> tuple[torch.Tensor, ...]:
        inputs = x.clone().requires_grad_()
        conv.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            out = conv(inputs)
        (
            out.float() * torch.linspace(-1, 1, out.numel()).view_as(out).to(torch.bfloat16).float()
        ).sum().backward()
        return out.detach(), inputs.grad, conv.weight.grad, conv.bias.grad

    out_bf16, grad_x_bf16, grad_w_bf16, _ = run(plain, autocast=True)
    out_new, grad_x_new, grad_w_new, grad_b_new = run(converted, autocast=True)
    _, grad_x_fp32, grad_w_fp32, grad_b_fp32 = run(plain, autocast=False)

    assert out_new.dtype == torch.bfloat16 and torch.equal(out_new, out_bf16)
    assert grad_x_new.dtype == torch.float32 and grad_w_new.dtype == torch.float32
    # the float32 backward of exactly representable values is the float32 gradient; bf16's is not
    assert torch.allclose(grad_w_new, grad_w_fp32, rtol=1e-5, atol=1e-5)
    assert torch.allclose(grad_x_new, grad_x_fp32, rtol=1e-5, atol=1e-5)
    assert grad_b_new.dtype == torch.float32 and torch.allclose(grad_b_new, grad_b_fp32, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(grad_w_bf16, grad_w_fp32, rtol=1e-5, atol=1e-5)


def test_a_network_trains_alike_and_infers_identically() -> None:
    network = _network().eval()  # fixed batch-norm statistics: runs are comparable
    converted = copy.deepcopy(network)
    train_depthwise_in_float32(converted)
    x = torch.rand(2, 3, 17, 17)

    def gradients(model: nn.Module, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            out = model(x)
        out.float().square().mean().backward()
        flat = torch.cat([p.grad.flatten() for p in model.parameters()])
        return out.detach().float(), flat

    out_bf16, grad_bf16 = gradients(network, autocast=True)
    out_new, grad_new = gradients(converted, autocast=True)
    out_fp32, grad_fp32 = gradients(network, autocast=False)
    assert torch.equal(out_new, out_bf16)  # Conv2dSame's padding and the bias included
    error_new = (grad_new - grad_fp32).norm() / grad_fp32.norm()
    error_bf16 = (grad_bf16 - grad_fp32).norm() / grad_fp32.norm()
    assert error_new < 0.05 and error_new <= error_bf16 * 1.1
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(converted(x), network(x))
    with torch.no_grad():
        assert torch.equal(converted(x), network(x))
