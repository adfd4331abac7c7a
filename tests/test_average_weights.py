"""training.average_weights: weight-by-weight interpolation of two checkpoints of one network."""

from __future__ import annotations

import pytest
import torch

from model.build import build_model
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training import average_weights


def _tiny(seed: int, head_channels: int = 32):
    torch.manual_seed(seed)
    model = build_model("efficientnet_lite0_segformer", head_channels=head_channels)  # with batch norms
    with torch.no_grad():  # batch-norm statistics that differ between the two, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model


def test_interpolation_is_the_weighted_mean_of_every_weight_and_statistic():
    base, tuned = _tiny(0), _tiny(1)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    tuned_state = {k: v.clone() for k, v in tuned.state_dict().items()}
    mixed = average_weights.interpolate_weights(base, tuned, 0.25).state_dict()
    floating = [k for k, v in tuned_state.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floating)
    for name in floating:
        expected = 0.75 * base_state[name] + 0.25 * tuned_state[name]
        torch.testing.assert_close(mixed[name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(mixed[floating[0]], tuned_state[floating[0]])


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_a_weight_outside_zero_to_one_is_refused(weight):
    with pytest.raises(ValueError, match="between 0 and 1"):
        average_weights.interpolate_weights(_tiny(0), _tiny(1), weight)


def test_networks_of_different_shapes_are_refused():
    with pytest.raises(CheckpointError, match="shape"):
        average_weights.interpolate_weights(_tiny(0, head_channels=32), _tiny(1, head_channels=64), 0.5)


def test_cli_writes_a_loadable_fp16_average_that_logs_what_it_mixed(tmp_path, capsys):
    base_path, tuned_path, out = tmp_path / "base.pth", tmp_path / "tuned.pth", tmp_path / "mixed.pth"
    save_checkpoint(_tiny(0), base_path, {"samples_seen": 100, "training_log": [{"kind": "gpu_job"}]})
    save_checkpoint(_tiny(1), tuned_path, {"samples_seen": 150, "training_log": [{"kind": "gpu_job"}]})
    assert average_weights.main([str(base_path), str(tuned_path), "--weight", "0.5", "--out", str(out)]) == 0
    mixed = load_checkpoint(out)
    assert mixed.metadata["samples_seen"] == 150
    assert mixed.metadata["training_log"][-1]["kind"] == "weight_average"
    assert mixed.metadata["training_log"][-1]["weight_of_tuned"] == 0.5
    base, tuned = load_checkpoint(base_path).state_dict(), load_checkpoint(tuned_path).state_dict()
    name = next(k for k, v in base.items() if v.is_floating_point() and v.numel() > 100)
    torch.testing.assert_close(mixed.state_dict()[name], (base[name] + tuned[name]) / 2, rtol=2e-3, atol=2e-3)
    assert "samples seen 150" in capsys.readouterr().out


def test_a_training_log_that_is_not_a_list_is_replaced_by_the_average_entry(tmp_path):
    base_path, tuned_path, out = tmp_path / "base.pth", tmp_path / "tuned.pth", tmp_path / "mixed.pth"
    save_checkpoint(_tiny(0), base_path)
    save_checkpoint(_tiny(1), tuned_path, {"samples_seen": 5, "training_log": 7})
    assert average_weights.main([str(base_path), str(tuned_path), "--out", str(out)]) == 0
    assert [e["kind"] for e in load_checkpoint(out).metadata["training_log"]] == ["weight_average"]


def test_cli_gives_one_message_for_a_missing_file(tmp_path, capsys):
    code = average_weights.main(
        [str(tmp_path / "a.pth"), str(tmp_path / "b.pth"), "--out", str(tmp_path / "c")]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith("average_weights: error:")
    assert not (tmp_path / "c").exists()
