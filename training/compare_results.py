"""Compare two ``isegformer-eval`` results.json object by object: is a difference larger than what the
few evaluation objects can tell apart?

    python -m training.compare_results BASE.json NEW.json [--sets voc,arc] [--resamples 10000]

prints, for every set both files share and for the chosen sets pooled, NoC@85, NoC@90, mIoU@1 and mIoU@5
of both, the mean paired difference (new - base), its 95 % percentile-bootstrap interval over objects
(resampled with replacement, the same objects for both files) and the share of resamples in which the new
results are better. ``training.ship_model`` decides on the means alone; this says how much of a
difference is noise (27 photo objects: a NoC@90 difference of a few tenths usually is).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.evaluation.noc import clicks_to_reach
from model.untrusted import parse_json
from training.ship_model import REPLACEMENT_SETS, protocol_differences

# (key, label, True when lower is better)
FIGURES = (
    ("noc85", "NoC@85", True),
    ("noc90", "NoC@90", True),
    ("miou1", "mIoU@1", False),
    ("miou5", "mIoU@5", False),
)
ObjectKey = tuple[str, str, int]  # (dataset, sample, object id)


def object_figures(results: dict[str, Any], dataset: str) -> dict[ObjectKey, np.ndarray]:
    """Per object of ``dataset``: NoC@85, NoC@90, IoU after 1 and after 5 clicks (an object that stopped
    early keeps its last IoU, as ``compute_noc``'s means). The IoUs are float32, as the evaluation stored
    and counted them: an IoU of float32 0.9 reaches 90 % there and here."""
    try:
        entry = results["datasets"][dataset]
        max_clicks = int(entry["max_clicks"])
        out: dict[ObjectKey, np.ndarray] = {}
        for record in entry["objects"]:
            curve = np.asarray(record["ious"], dtype=np.float32).reshape(-1)
            if curve.size == 0 or not np.isfinite(curve).all():
                raise ValueError("an object without a finite IoU curve")
            padded = np.pad(curve, (0, max(0, 5 - curve.size)), mode="edge")
            key = (dataset, str(record["sample"]), int(record["object_id"]))
            out[key] = np.array(
                [
                    clicks_to_reach(curve, 0.85, max_clicks),
                    clicks_to_reach(curve, 0.90, max_clicks),
                    padded[0],
                    padded[4],
                ]
            )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"the results hold no per-object figures for {dataset!r} ({error})") from None
    if not out:
        raise ValueError(f"{dataset!r}: no objects")
    if len(out) != len(entry["objects"]):  # a pairing by key would silently drop the repeats
        raise ValueError(f"{dataset!r}: an object is listed more than once")
    return out


@dataclass(frozen=True)
class Comparison:
    """Paired figures of ``objects`` objects: means of both, and of new - base with its interval."""

    objects: int
    base: np.ndarray  # (4,) means, in the order of FIGURES
    new: np.ndarray
    difference: np.ndarray
    low: np.ndarray  # the interval's ends
    high: np.ndarray
    new_better_share: np.ndarray  # share of resamples in which the new results are better


def compare(
    base: dict[str, Any],
    new: dict[str, Any],
    datasets: tuple[str, ...],
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Paired percentile bootstrap over the objects of ``datasets`` taken together. Both results must hold
    the same objects (the same evaluation sets); raises ValueError otherwise."""
    base_objects: dict[ObjectKey, np.ndarray] = {}
    new_objects: dict[ObjectKey, np.ndarray] = {}
    for dataset in datasets:
        base_objects.update(object_figures(base, dataset))
        new_objects.update(object_figures(new, dataset))
    if base_objects.keys() != new_objects.keys():
        only = len(base_objects.keys() ^ new_objects.keys())
        raise ValueError(
            f"{', '.join(datasets)}: the two results hold different objects ({only} not in both)"
        )
    keys = sorted(base_objects)
    before = np.stack([base_objects[k] for k in keys])
    after = np.stack([new_objects[k] for k in keys])
    paired = after - before
    rng = np.random.default_rng(seed)
    means = paired[rng.integers(0, len(keys), size=(resamples, len(keys)))].mean(axis=1)
    lower_is_better = np.array([lower for _, _, lower in FIGURES])
    better = np.where(lower_is_better, means < 0, means > 0).mean(axis=0)
    tail = (1 - level) / 2 * 100
    return Comparison(
        objects=len(keys),
        base=before.mean(axis=0),
        new=after.mean(axis=0),
        difference=paired.mean(axis=0),
        low=np.percentile(means, tail, axis=0),
        high=np.percentile(means, 100 - tail, axis=0),
        new_better_share=better,
    )


def format_comparison(title: str, comparison: Comparison) -> str:
    """A small table of one comparison."""
    lines = [
        f"{title}: {comparison.objects} objects paired",
        f"  {'figure':<7} {'base':>7} {'new':>7} {'new-base':>9}  {'95 % interval':<19} new better in",
    ]
    for index, (_, label, _) in enumerate(FIGURES):
        digits = 2 if label.startswith("NoC") else 3
        interval = f"[{comparison.low[index]:+.{digits}f}, {comparison.high[index]:+.{digits}f}]"
        lines.append(
            f"  {label:<7} {comparison.base[index]:7.{digits}f} {comparison.new[index]:7.{digits}f} "
            f"{comparison.difference[index]:+9.{digits}f}  {interval:<19} "
            f"{comparison.new_better_share[index] * 100:5.1f} % of resamples"
        )
    return "\n".join(lines)


def _read(path: str) -> dict[str, Any]:
    results = parse_json(Path(path).read_text())
    if not isinstance(results, dict) or not isinstance(results.get("datasets"), dict):
        raise ValueError(f"{path}: not an isegformer-eval results.json")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.compare_results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("base", help="results.json of the reference (e.g. the shipped network)")
    parser.add_argument("new", help="results.json of the candidate")
    parser.add_argument(
        "--sets",
        default=",".join(REPLACEMENT_SETS),
        help=f"comma-separated sets to pool (default {','.join(REPLACEMENT_SETS)}: what ship_model judges)",
    )
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pooled = tuple(name for name in args.sets.split(",") if name)
    try:
        if not 100 <= args.resamples <= 100_000:  # an index table of resamples x objects is held at once
            raise ValueError("--resamples must be between 100 and 100000")
        if not pooled:
            raise ValueError("--sets names no set")
        base, new = _read(args.base), _read(args.new)
        shared = [name for name in base["datasets"] if name in new["datasets"]]
        missing = [name for name in pooled if name not in shared]
        if missing:
            raise ValueError(
                f"{', '.join(map(repr, missing))} not in both results (they hold {shared}; --sets)"
            )
        tables = [
            format_comparison(name, compare(base, new, (name,), args.resamples, seed=args.seed))
            for name in shared
        ]
        if len(pooled) > 1:
            tables.append(
                format_comparison(
                    " + ".join(pooled), compare(base, new, pooled, args.resamples, seed=args.seed)
                )
            )
        differences = protocol_differences(base, new)
    except (OSError, ValueError) as error:
        print(f"compare_results: error: {error}", file=sys.stderr)
        return 2
    if differences:
        print(f"note: the two runs differ in how they were evaluated: {'; '.join(differences)}\n")
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
