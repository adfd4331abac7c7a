"""Interpolate two networks of one architecture, weight by weight (WiSE-FT; model soups).

    python -m training.average_weights BASE TUNED --weight 0.5 --out W

``W = (1 - weight) * BASE + weight * TUNED`` for every floating-point weight and batch-norm statistic;
counters (``num_batches_tracked``) are TUNED's. Fine-tuning a network on a narrow distribution (the CPU
segments' 249 stamps) improves what that distribution teaches and can lose what the base learned more
broadly (here: the first click on real photos); interpolating between the two keeps much of both when
TUNED descends from BASE (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). Judge the
result like any candidate (``isegformer-eval``, then ``training.ship_model --shipped``).

The output is fp16 in the original checkpoint format; its metadata is TUNED's (samples seen, training
log) plus one log entry saying what was averaged with what.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.modeling.interactive import InteractiveModel


def interpolate_weights(base: InteractiveModel, tuned: InteractiveModel, weight: float) -> InteractiveModel:
    """TUNED with every floating-point tensor moved to ``(1 - weight) * base + weight * tuned`` (in place).

    Raises :class:`CheckpointError` when the two are not the same network (architecture, input channels,
    weight names or shapes)."""
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise ValueError(f"weight must be between 0 and 1, got {weight!r}")
    if (base.arch, base.input_channels) != (tuned.arch, tuned.input_channels):
        raise CheckpointError(
            f"cannot average {base.arch} ({base.input_channels} input channels) with "
            f"{tuned.arch} ({tuned.input_channels} input channels)"
        )
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    if base_state.keys() != tuned_state.keys():
        differing = sorted(base_state.keys() ^ tuned_state.keys())
        raise CheckpointError(f"the two networks hold different weights ({', '.join(differing[:4])})")
    mixed = {}
    for name, tuned_value in tuned_state.items():
        base_value = base_state[name]
        if base_value.shape != tuned_value.shape:
            raise CheckpointError(
                f"{name}: shape {tuple(base_value.shape)} against {tuple(tuned_value.shape)}"
            )
        if tuned_value.is_floating_point():
            mixed[name] = torch.lerp(base_value.float(), tuned_value.float(), weight).to(tuned_value.dtype)
        else:
            mixed[name] = tuned_value
    tuned.load_state_dict(mixed, strict=True)
    return tuned


def average_files(base_path: str | Path, tuned_path: str | Path, weight: float, out: str | Path) -> dict:
    """Interpolate two checkpoint files into ``out`` (fp16); returns the metadata written."""
    base = load_checkpoint(base_path).float()
    tuned = load_checkpoint(tuned_path).float()
    mixed = interpolate_weights(base, tuned, weight)
    metadata = dict(getattr(tuned, "metadata", {}) or {})
    entry = {
        "kind": "weight_average",
        "base": Path(base_path).name,
        "tuned": Path(tuned_path).name,
        "weight_of_tuned": weight,
        "date": time.strftime("%Y-%m-%d"),
    }
    log = metadata.get("training_log")
    metadata["training_log"] = [*(log if isinstance(log, list) else []), entry]
    save_checkpoint(mixed, out, metadata, half=True)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.average_weights",
        description="Interpolate two networks of one architecture weight by weight (WiSE-FT).",
    )
    parser.add_argument("base", help="the network fine-tuning started from")
    parser.add_argument("tuned", help="the fine-tuned network")
    parser.add_argument(
        "--weight", type=float, default=0.5, help="share of TUNED, 0..1 (0 = BASE, 1 = TUNED; default 0.5)"
    )
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    args = parser.parse_args(argv)
    if not 0.0 <= args.weight <= 1.0:
        print("average_weights: error: --weight must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        metadata = average_files(args.base, args.tuned, args.weight, args.out)
    except (CheckpointError, OSError) as error:
        print(f"average_weights: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{args.out}: {args.weight:g} x {args.tuned} + {1 - args.weight:g} x {args.base}; "
        f"samples seen {metadata.get('samples_seen', 'unknown')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
