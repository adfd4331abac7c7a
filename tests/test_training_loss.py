"""Normalized focal loss and auxiliary BCE against values computed by hand from their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from training.loss import InteractiveLoss, NormalizedFocalLoss, SigmoidBinaryCrossEntropy


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    # probabilities 0.5, 0.5, 0.75, sigmoid(5); labels object, background, background, ignored
    logits = torch.tensor([[[[0.0, 0.0], [math.log(3.0), 5.0]]]])
    label = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])
    return logits, label


def test_nfl_matches_hand_computation() -> None:
    logits, label = _example()
    # p_t = 0.5, 0.5, 0.25 (ignored pixel: 1); beta = (1 - p_t)^2 = 0.25, 0.25, 0.5625 -> sum 1.0625
    # normaliser = 3 valid pixels / 1.0625; alpha = 0.5 for object and background alike
    mult = 3.0 / 1.0625
    pixel_losses = [0.5 * 0.25 * mult * -math.log(0.5)] * 2 + [0.5 * 0.5625 * mult * -math.log(0.25)]
    expected = sum(pixel_losses) / 3.0
    loss = NormalizedFocalLoss(alpha=0.5, gamma=2.0)(logits, label)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.530054, abs=1e-6)


def test_nfl_alpha_weights_object_and_background() -> None:
    logits, label = _example()
    mult = 3.0 / 1.0625
    expected = (
        0.25 * 0.25 * mult * -math.log(0.5)
        + 0.75 * (0.25 * mult * -math.log(0.5) + 0.5625 * mult * -math.log(0.25))
    ) / 3.0
    assert NormalizedFocalLoss(alpha=0.25)(logits, label).item() == pytest.approx(expected, rel=1e-6)


def test_nfl_normaliser_is_detached() -> None:
    logits, label = _example()
    logits = logits.clone().requires_grad_(True)
    NormalizedFocalLoss()(logits, label).sum().backward()
    # gradient with the factor held constant, by autograd on the explicit formula
    ref = logits.detach().clone().requires_grad_(True)
    p = torch.sigmoid(ref)
    valid = label != -1
    p_t = torch.where(valid, 1 - (label - p).abs(), torch.ones_like(p))
    beta = (1 - p_t) ** 2
    mult = (valid.sum() / beta.sum()).detach()
    (-(0.5 * valid) * beta * mult * torch.log(p_t)).sum().div(3.0).backward()
    assert torch.allclose(logits.grad, ref.grad, atol=1e-7)
    assert logits.grad[0, 0, 1, 1].item() == 0.0  # ignored pixel gets no gradient


def test_nfl_per_sample_normalisation() -> None:
    logits, label = _example()
    both = NormalizedFocalLoss()(torch.cat([logits, logits * 0 - 4]), torch.cat([label, label]))
    assert both.shape == (2,)
    assert both[0].item() == pytest.approx(0.530054, abs=1e-6)


def test_bce_ignores_label_and_averages_all_pixels() -> None:
    logits, label = _example()
    # -log(sigmoid(0)), -log(1 - sigmoid(0)), -log(1 - 0.75), ignored = 0; mean over 4 pixels
    expected = (math.log(2) + math.log(2) + math.log(4)) / 4.0
    assert SigmoidBinaryCrossEntropy()(logits, label).item() == pytest.approx(expected, rel=1e-6)


def test_interactive_loss_weights_aux_by_0_4() -> None:
    logits, label = _example()
    total, parts = InteractiveLoss()({"instances": logits, "instances_aux": logits}, label)
    assert set(parts) == {"instance_loss", "instance_aux_loss"}
    assert total.item() == pytest.approx(0.530054 + 0.4 * (2 * math.log(2) + math.log(4)) / 4, abs=1e-6)
    total, parts = InteractiveLoss()({"instances": logits, "instances_aux": None}, label)
    assert set(parts) == {"instance_loss"} and total.item() == pytest.approx(0.530054, abs=1e-6)
