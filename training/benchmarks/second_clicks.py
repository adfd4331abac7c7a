"""Second clicks that agree with the mask, for networks and engines side by side in one run.

    python -m training.benchmarks.second_clicks --datasets voc:Export=EVAL/voc,arc:Export=EVAL/arc \\
        --checkpoint shipped=resources/models/isegformer_lite0.pth \\
        --checkpoint new=RUN/isegformer_lite0.pth \\
        [--engine geo_grabcut] [--device cpu] [--local-edits] [--json OUT.json]

Per data set and model: mIoU after the protocol's first click, then for a second positive on another part
of the object and for a negative next to it (:mod:`model.evaluation.second_click`) the number of objects
that have one, the mean IoU change it makes and how many objects it loses more than 0.05 IoU on. Then the
bundled photo (no ground truth): mask pixels after each click of the sequences a new user tried in the
first hour (:data:`BUNDLED_PHOTO_SEQUENCES`), where a second click lost the man the first click found.
``--local-edits`` applies :mod:`model.local_edits` to every model (the app does for networks).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.atomic_io import atomic_write_text, require_output_folder
from model.checkpoint import CheckpointError
from model.clicks import Click
from model.evaluation.second_click import SecondClickResult, evaluate_second_clicks
from model.prediction import ClickPredictor
from model.threshold import DEFAULT_THRESHOLD, probability_mask
from training.datasets import DatasetError, EvalDataset, open_dataset
from training.evaluate import checkpoint_factory, engine_factory, parse_dataset_specs, with_local_edits

LOST = 0.05  # an agreeing second click that lowers IoU by more than this lost (part of) the object

# (row, column, positive) in resources/samples/sample.jpg: a click on the man's hands, then a negative on
# the woman behind him and one on the wall right of her; or a second positive on his face.
BUNDLED_PHOTO_SEQUENCES: dict[str, list[tuple[int, int, bool]]] = {
    "hands, -woman, -(110,350)": [(170, 255, True), (75, 195, False), (110, 350, False)],
    "hands, +face": [(170, 255, True), (115, 260, True)],
}


@dataclass(frozen=True)
class SecondClickSummary:
    """Figures of one model on one data set (IoU changes against the first click's IoU)."""

    objects: int
    miou_first: float
    positives: int
    positive_change: float
    positive_lost: int
    negatives: int
    negative_change: float
    negative_lost: int

    @classmethod
    def of(cls, results: Sequence[SecondClickResult]) -> SecondClickSummary:
        positive = _changes([(r.first_iou, r.positive_iou) for r in results])
        negative = _changes([(r.first_iou, r.negative_iou) for r in results])
        return cls(
            objects=len(results),
            miou_first=float(np.mean([r.first_iou for r in results])) if results else float("nan"),
            positives=int(positive.size),
            positive_change=float(positive.mean()) if positive.size else float("nan"),
            positive_lost=int(np.count_nonzero(positive < -LOST)),
            negatives=int(negative.size),
            negative_change=float(negative.mean()) if negative.size else float("nan"),
            negative_lost=int(np.count_nonzero(negative < -LOST)),
        )


def _changes(pairs: Sequence[tuple[float, float | None]]) -> np.ndarray:
    """IoU after a second click minus IoU after the first, for the objects that have that click."""
    return np.array([after - first for first, after in pairs if after is not None], dtype=np.float64)


def click_sequence_pixels(
    predictor: ClickPredictor,
    image: np.ndarray,
    sequence: Sequence[tuple[int, int, bool]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[int]:
    """Mask pixels after each click of ``sequence`` ((row, column, positive) each), every call continuing
    from the one before, as the app does."""
    predictor.set_image(image)
    clicks: list[Click] = []
    state = None
    pixels = []
    for index, (y, x, positive) in enumerate(sequence):
        clicks.append(Click(y=y, x=x, is_positive=positive, index=index))
        prediction = predictor.predict(clicks, state)
        state = prediction.state
        pixels.append(int(np.count_nonzero(probability_mask(prediction.prob, threshold))))
    return pixels


def parse_models(checkpoints: Sequence[str], engines: Sequence[str]) -> list[tuple[str, str, str]]:
    """``LABEL=PATH`` or ``PATH`` checkpoints and engine names -> (label, kind, what) in the order given."""
    models = []
    for spec in checkpoints:
        label, equals, path = spec.partition("=")
        if not equals:
            label, path = Path(spec).parent.name or Path(spec).stem, spec
        models.append((label, "checkpoint", path))
    models += [(name, "engine", name) for name in engines]
    labels = [m[0] for m in models]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two models share a label in {labels}: name them LABEL=PATH")
    if not models:
        raise ValueError("give at least one --checkpoint or --engine")
    return models


def table(rows: Sequence[tuple[str, str, SecondClickSummary]]) -> str:
    """The printed table: one row per (data set, model)."""
    lines = [
        "| data | model | objects | mIoU@1 | 2nd positive: objects / mean IoU change / lost | "
        "nearby negative: objects / mean IoU change / lost |",
        "|---|---|---:|---:|---|---|",
    ]
    for data, model, s in rows:
        lines.append(
            f"| {data} | {model} | {s.objects} | {s.miou_first:.3f} | "
            f"{s.positives} / {s.positive_change:+.3f} / {s.positive_lost} | "
            f"{s.negatives} / {s.negative_change:+.3f} / {s.negative_lost} |"
        )
    return "\n".join(lines)


def measure(
    dataset: EvalDataset, predictors: dict[str, ClickPredictor], threshold: float
) -> dict[str, list[SecondClickResult]]:
    """Every object of ``dataset`` with every predictor -> results per predictor label."""
    per_model: dict[str, list[SecondClickResult]] = {label: [] for label in predictors}
    for sample in dataset:
        for object_id in sample.object_ids:
            gt_mask = sample.gt_mask(object_id)
            for label, predictor in predictors.items():
                per_model[label].append(evaluate_second_clicks(predictor, sample.image, gt_mask, threshold))
    return per_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="", help="as isegformer-eval's (LABEL:NAME=PATH, ...)")
    parser.add_argument("--data-root", default="datasets")
    parser.add_argument("--checkpoint", action="append", default=[], help="[LABEL=]PATH; repeat to compare")
    parser.add_argument("--engine", action="append", default=[], help="a built-in engine; repeatable")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument(
        "--local-edits",
        action="store_true",
        help="a click always takes the pixel under it and never takes away most of the mask far from "
        "itself (model.local_edits), as the app does for networks",
    )
    parser.add_argument("--no-bundled-photo", action="store_true", help="skip the bundled photo's sequences")
    parser.add_argument("--json", type=Path, help="also write every object's clicks and IoUs here")
    args = parser.parse_args(argv)
    predictors: dict[str, ClickPredictor] = {}
    try:
        if not 0.0 < args.threshold < 1.0:
            raise ValueError(f"--threshold must lie in (0, 1), got {args.threshold}")
        if args.json is not None:
            require_output_folder(args.json.parent, "--json's folder")
        models = parse_models(args.checkpoint, args.engine)
        specs = parse_dataset_specs(args.datasets, args.data_root) if args.datasets else []
        datasets = [(spec.label, open_dataset(spec.name, spec.path)) for spec in specs]
        for label, kind, what in models:
            if kind == "checkpoint" and not Path(what).is_file():
                raise FileNotFoundError(f"checkpoint not found: {what}")
            make = (
                checkpoint_factory(Path(what), args.device, True, True)
                if kind == "checkpoint"
                else engine_factory(what)
            )
            if args.local_edits:
                make = with_local_edits(make, args.threshold)
            predictors[label] = make("")
    except (DatasetError, CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"second_clicks: {error}", file=sys.stderr)
        return 2

    record: dict = {"threshold": args.threshold, "sets": {}, "bundled_photo": {}}
    try:
        per_set = {label: measure(dataset, predictors, args.threshold) for label, dataset in datasets}
    except DatasetError as error:  # a sample that cannot be read, found during the run
        print(f"second_clicks: {error}", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, SecondClickSummary]] = []
    pooled: dict[str, list[SecondClickResult]] = {label: [] for label in predictors}
    for data_label, per_model in per_set.items():
        for label, results in per_model.items():
            rows.append((data_label, label, SecondClickSummary.of(results)))
            pooled[label] += results
            record["sets"].setdefault(data_label, {})[label] = [
                {"first_iou": r.first_iou, "positive_iou": r.positive_iou, "negative_iou": r.negative_iou,
                 "clicks": [[c.y, c.x, c.is_positive] for c in (r.first, r.positive, r.negative)
                            if c is not None]}
                for r in results
            ]  # fmt: skip
    if len(datasets) > 1:
        rows += [("all sets", label, SecondClickSummary.of(results)) for label, results in pooled.items()]
    if rows:
        print(table(rows))

    if not args.no_bundled_photo:
        from resources import SAMPLE_IMAGE

        image = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))
        print("\nBundled photo, mask pixels after each click:")
        for name, sequence in BUNDLED_PHOTO_SEQUENCES.items():
            for label, predictor in predictors.items():
                pixels = click_sequence_pixels(predictor, image, sequence, args.threshold)
                record["bundled_photo"].setdefault(name, {})[label] = pixels
                print(f"  {name:28s} {label:16s} {' / '.join(f'{p:,}' for p in pixels)}")
    if args.json:
        atomic_write_text(args.json, json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
