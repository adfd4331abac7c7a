"""Training losses of iSegFormer / RITM: normalized focal loss and the auxiliary sigmoid BCE.

Both take ``pred`` (B, 1, H, W) logits and ``label`` (B, 1, H, W) float32 with 1 = object,
0 = background and ``ignore_label`` (-1) = left out, and return one loss per sample (B,) float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.morphology import dilate, erode


class NormalizedFocalLoss(nn.Module):
    """Normalized focal loss (NFL, RITM's ``NormalizedFocalLossSigmoid``).

    With ``p_t = 1 - |label - sigmoid(pred)|`` and ``beta = (1 - p_t) ** gamma``, the focal weights are
    rescaled per sample so that they sum to the number of valid pixels:
    ``beta * N_valid / (sum(beta) + eps)`` (the factor is detached). The pixel loss
    ``-alpha_t * beta' * log(min(p_t + eps, 1))`` (``alpha_t`` = ``alpha`` on object pixels, ``1 - alpha``
    elsewhere) is summed per sample and divided by ``N_valid + eps``.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 2.0,
        eps: float = 1e-12,
        ignore_label: int = -1,
        detach_normalizer: bool = True,
        max_mult: float = -1.0,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.ignore_label = ignore_label
        self.detach_normalizer = detach_normalizer
        self.max_mult = max_mult

    def forward(
        self, pred: torch.Tensor, label: torch.Tensor, pixel_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample loss; ``pixel_weight`` (B, 1, H, W), e.g. :func:`boundary_weight`, weights each
        pixel's term and the division is by the weighted count of valid pixels (FocalClick's WFNL)."""
        label = label.view(pred.shape).to(torch.float32)
        prob = torch.sigmoid(pred.to(torch.float32))
        valid = label != self.ignore_label
        is_object = label > 0.5
        alpha = torch.where(is_object, self.alpha * valid, (1.0 - self.alpha) * valid)
        p_t = torch.where(valid, 1.0 - torch.abs(label - prob), torch.ones_like(prob))
        beta = (1.0 - p_t) ** self.gamma
        mult = valid.sum(dim=(-2, -1), keepdim=True) / (beta.sum(dim=(-2, -1), keepdim=True) + self.eps)
        if self.detach_normalizer:
            mult = mult.detach()
        beta = beta * mult
        if self.max_mult > 0:
            beta = torch.clamp_max(beta, self.max_mult)
        log_p_t = torch.log(torch.clamp_max(p_t + self.eps, 1.0))
        loss = -alpha * beta * log_p_t * valid
        dims = tuple(range(1, loss.dim()))
        if pixel_weight is None:
            return loss.sum(dim=dims) / (valid.sum(dim=dims) + self.eps)
        weight = pixel_weight.view(pred.shape).to(torch.float32) * valid
        return (loss * weight).sum(dim=dims) / (weight.sum(dim=dims) + self.eps)


def boundary_weight(label: torch.Tensor, width: int, weight: float) -> torch.Tensor:
    """(B, 1, H, W) pixel weights: ``weight`` within ``width`` pixels of the object's boundary (on either
    side), 1 elsewhere; ``label`` (B, 1, H, W) with 1 = object (ignored pixels count as background)."""
    inside = (label > 0.5).to(torch.float32)
    return 1.0 + (weight - 1.0) * (dilate(inside, width) - erode(inside, width))


class SigmoidBinaryCrossEntropy(nn.Module):
    """Per-pixel BCE on logits, ignored pixels counting as zero loss, mean over each sample's pixels
    (RITM's ``SigmoidBinaryCrossEntropyLoss``; the auxiliary loss of the HRNet-OCR models)."""

    def __init__(self, ignore_label: int = -1) -> None:
        super().__init__()
        self.ignore_label = ignore_label

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        pred = pred.to(torch.float32)
        label = label.view(pred.shape).to(torch.float32)
        valid = label != self.ignore_label
        target = torch.where(valid, label, torch.zeros_like(label))
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * valid
        return loss.mean(dim=tuple(range(1, loss.dim())))


class InteractiveLoss(nn.Module):
    """``instance_weight * NFL(instances) + aux_weight * BCE(instances_aux)`` averaged over the batch.

    Returns the total (scalar) and the parts for logging.
    """

    def __init__(self, instance_weight: float = 1.0, aux_weight: float = 0.4) -> None:
        super().__init__()
        self.instance_weight = instance_weight
        self.aux_weight = aux_weight
        self.instance_loss = NormalizedFocalLoss(alpha=0.5, gamma=2.0)
        self.aux_loss = SigmoidBinaryCrossEntropy()

    def forward(
        self, outputs: dict[str, torch.Tensor | None], label: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {"instance_loss": self.instance_loss(outputs["instances"], label).mean()}
        total = self.instance_weight * parts["instance_loss"]
        aux = outputs.get("instances_aux")
        if aux is not None and self.aux_weight > 0:
            parts["instance_aux_loss"] = self.aux_loss(aux, label).mean()
            total = total + self.aux_weight * parts["instance_aux_loss"]
        return total, parts
