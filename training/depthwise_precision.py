"""Depth-wise convolutions differentiated in float32 while training under the CPU's bfloat16 autocast.

oneDNN computes a bf16 depth-wise convolution's forward fast but its backward slowly. Measured on a 2-core
AVX512-BF16 EPYC, channels-last, batch 8, for EfficientNet-Lite0's 5x5 depth-wise convolution at 1152
channels and 8x8: forward 0.1 ms in bf16 and 0.4 ms in fp32; backward 16.1 ms in bf16 and 2.5 ms in fp32,
casts included. So the forward stays in bf16 and the backward runs in fp32, cast back to the dtypes of
the input and the weight. Only passes that record gradients on the CPU under autocast change; inference
(the predictor, the click forwards of iterative training) and CUDA are untouched. Whole steps:
``python -m training.benchmarks.train_step``.

The module's class is swapped for a subclass with the same parameters, so state dicts, checkpoints and
deep copies are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same
from torch import nn

_SUBCLASSES: dict[type, type] = {}


class _ForwardInAutocastDtypeBackwardInFloat32(torch.autograd.Function):
    """``conv2d``: forward in the autocast dtype (as autocast computes it), gradients in float32."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: tuple
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.bias_dtype = conv, None if bias is None else bias.dtype
        dtype = torch.get_autocast_dtype("cpu")
        stride, padding, dilation, groups = conv
        with torch.autocast("cpu", enabled=False):
            bias = None if bias is None else bias.to(dtype)
            return F.conv2d(x.to(dtype), weight.to(dtype), bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad.float(), x.float(), weight.float(), None if ctx.bias_dtype is None else [weight.shape[0]],
            list(stride), list(padding), list(dilation), False, [0, 0], groups,
            [needs_x, needs_weight, needs_bias and ctx.bias_dtype is not None],
        )  # fmt: skip
        return (
            grad_x.to(x.dtype) if grad_x is not None else None,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(ctx.bias_dtype) if grad_bias is not None else None,
            None,
        )


class _Float32Backward:
    """Mixin for ``nn.Conv2d`` subclasses: a float32 backward when training under CPU autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv: Any = self
        if not (
            x.device.type == "cpu"
            and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu")
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
        ):
            return super().forward(x)  # type: ignore[misc]
        if isinstance(conv, Conv2dSame):
            x = pad_same(x, conv.weight.shape[-2:], conv.stride, conv.dilation)
        return _ForwardInAutocastDtypeBackwardInFloat32.apply(
            x, conv.weight, conv.bias, (conv.stride, conv.padding, conv.dilation, conv.groups)
        )


def is_depthwise(module: nn.Module) -> bool:
    """A 2-d convolution with one group per input channel (and more than one channel)."""
    return isinstance(module, nn.Conv2d) and module.in_channels > 1 and module.groups == module.in_channels


def train_depthwise_in_float32(model: nn.Module) -> int:
    """Give every depth-wise convolution of ``model`` a float32 backward while training under CPU
    autocast (in place); returns how many there are. Calling it twice changes nothing more."""
    count = 0
    for module in model.modules():
        if not is_depthwise(module):
            continue
        cls = type(module)
        if not issubclass(cls, _Float32Backward):
            if cls not in _SUBCLASSES:
                _SUBCLASSES[cls] = type(f"Float32Backward{cls.__name__}", (_Float32Backward, cls), {})
            module.__class__ = _SUBCLASSES[cls]
        count += 1
    return count
