"""``isegformer-eval``: NoC evaluation of a checkpoint or a built-in engine on benchmark datasets.

Example::

    isegformer-eval --checkpoint weights/coco_lvis_h18_itermask.pth \\
        --datasets GrabCut,Berkeley,DAVIS,SBD --data-root datasets --output eval_results

Writes ``results.json`` (settings, per-dataset figures, per-object clicks and IoUs), ``results.csv``
(one row per dataset) and ``miou_<dataset>.png`` (mean IoU against the number of clicks) to ``--output``,
and prints the results table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.atomic_io import atomic_write_bytes, atomic_write_text, require_output_folder
from model.evaluation.clicker import IGNORE_LABEL
from model.evaluation.noc import (
    DEFAULT_IOU_THRESHOLDS,
    NocSummary,
    compute_noc,
    evaluate_sample,
    threshold_key,
)
from model.prediction import ClickPredictor
from model.threshold import DEFAULT_THRESHOLD
from training.datasets import DatasetError, EvalDataset, canonical_name, default_path, open_dataset

PredictorFactory = Callable[[str], ClickPredictor]
"""Makes the predictor for one dataset, given the dataset's name."""

ZOOM_IN_TARGET_SIZE = {"DAVIS": 600}  # the original "cvpr" eval mode; every other dataset: 400
DEFAULT_ZOOM_IN_TARGET_SIZE = 400


@dataclass
class EvalSettings:
    """The protocol's parameters."""

    target_iou: float = 0.90
    max_clicks: int = 20
    threshold: float = DEFAULT_THRESHOLD

    @property
    def iou_thresholds(self) -> tuple[float, ...]:
        """NoC thresholds reported: 0.80/0.85/0.90 up to the target, plus the target itself."""
        chosen = [t for t in DEFAULT_IOU_THRESHOLDS if t <= self.target_iou + 1e-9]
        if not any(abs(t - self.target_iou) < 1e-9 for t in chosen):
            chosen.append(self.target_iou)
        return tuple(chosen)


@dataclass
class DatasetResult:
    """Everything measured on one dataset; ``objects``: one dict per object (sample, id, clicks, ious)."""

    name: str
    path: str
    summary: NocSummary
    elapsed_seconds: float
    objects: list[dict] = field(repr=False)
    reader: str = ""  # the layout it was read with (e.g. "ExportDataset")
    samples_without_objects: list[str] = field(default_factory=list)  # skipped (nothing to click)
    ignored_pixels: int = 0  # pixels the masks leave out (-1: a void border, GrabCut's band), all samples

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "reader": self.reader,
            "samples_without_objects": self.samples_without_objects,
            "ignored_pixels": self.ignored_pixels,
            **self.summary.to_dict(),
            "elapsed_seconds": self.elapsed_seconds,
            "objects": self.objects,
        }


def evaluate_dataset(
    name: str, dataset: EvalDataset, predictor: ClickPredictor, settings: EvalSettings, progress: bool = True
) -> DatasetResult:
    """Run the protocol on every object of every sample of ``dataset``. The elapsed time (for seconds
    per click) covers loading and prediction, as in the original."""
    objects: list[dict] = []
    without_objects: list[str] = []
    ignored_pixels = 0
    start = time.perf_counter()
    for sample in tqdm(dataset, total=len(dataset), desc=name, unit="img", disable=not progress, leave=False):
        ignored_pixels += int(np.count_nonzero(sample.instances == IGNORE_LABEL))
        if not sample.object_ids:
            without_objects.append(sample.name)
        for object_id in sample.object_ids:
            result = evaluate_sample(
                predictor,
                sample.image,
                sample.gt_mask(object_id),
                max_clicks=settings.max_clicks,
                target_iou=settings.target_iou,
                threshold=settings.threshold,
            )
            objects.append(
                {
                    "sample": sample.name,
                    "object_id": object_id,
                    "clicks": [[int(c.y), int(c.x), bool(c.is_positive)] for c in result.clicks],
                    "ious": [float(v) for v in result.ious],
                    "seconds": result.seconds,
                }
            )
    elapsed = time.perf_counter() - start
    if not objects:
        raise DatasetError(dataset.root, dataset.LAYOUT, "the dataset has no object to evaluate")
    summary = compute_noc(
        [np.asarray(o["ious"], dtype=np.float32) for o in objects],
        iou_thresholds=settings.iou_thresholds,
        max_clicks=settings.max_clicks,
        seconds=elapsed,
    )
    return DatasetResult(name, str(dataset.root), summary, elapsed, objects, type(dataset).__name__,
                         without_objects, ignored_pixels)  # fmt: skip


def results_table(results: Sequence[DatasetResult], settings: EvalSettings, model_label: str) -> str:
    """The original's results table: NoC per threshold, ``>=max`` counts, seconds per click, time."""
    keys = [threshold_key(t) for t in settings.iou_thresholds]
    over_keys = keys[1:] if len(keys) > 1 else keys
    columns = ["Dataset", "#Obj"] + [f"NoC@{k}%" for k in keys]
    columns += [f">={settings.max_clicks}@{k}%" for k in over_keys] + ["SPC,s", "Time"]
    widths = [max(11, len(c) + 2) for c in columns]

    def row(cells: Sequence[str]) -> str:
        return "|" + "|".join(f"{cell:^{w}}" for cell, w in zip(cells, widths, strict=True)) + "|"

    header = row(columns)
    rule = "-" * len(header)
    lines = [f"Eval results for model: {model_label}", rule, header, rule]
    for result in results:
        s = result.summary
        spc = f"{s.seconds_per_click:.3f}" if s.seconds_per_click is not None else "?"
        cells = [result.name, str(s.n_objects)] + [f"{s.noc[k]:.2f}" for k in keys]
        cells += [str(s.over_max[k]) for k in over_keys]
        cells += [spc, str(timedelta(seconds=int(result.elapsed_seconds)))]
        lines.append(row(cells))
    lines.append(rule)
    return "\n".join(lines)


def write_csv(results: Sequence[DatasetResult], settings: EvalSettings, path: Path) -> None:
    """One row per dataset: NoC and ``>=max`` counts per threshold, SPC, time, mIoU at 1/5/10/max clicks."""
    keys = [threshold_key(t) for t in settings.iou_thresholds]
    miou_clicks = sorted({c for c in (1, 5, 10, settings.max_clicks) if c <= settings.max_clicks})
    fields = ["dataset", "n_objects", "n_clicks"] + [f"noc@{k}" for k in keys]
    fields += [f"over_{settings.max_clicks}@{k}" for k in keys]
    fields += ["seconds_per_click", "elapsed_seconds"] + [f"miou@{c}" for c in miou_clicks]
    rows = []
    for result in results:
        s = result.summary
        row = {"dataset": result.name, "n_objects": s.n_objects, "n_clicks": s.n_clicks}
        row.update({f"noc@{k}": f"{s.noc[k]:.6f}" for k in keys})
        row.update({f"over_{settings.max_clicks}@{k}": s.over_max[k] for k in keys})
        row["seconds_per_click"] = f"{s.seconds_per_click:.6f}"
        row["elapsed_seconds"] = f"{result.elapsed_seconds:.3f}"
        row.update({f"miou@{c}": f"{s.mean_iou_per_click[c - 1]:.6f}" for c in miou_clicks})
        rows.append(row)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())


def plot_miou(result: DatasetResult, model_label: str, path: Path) -> None:
    """PNG of the mean IoU (%) after 1..max clicks for one dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    miou = 100.0 * result.summary.mean_iou_per_click
    clicks = np.arange(1, miou.size + 1)
    figure, axes = plt.subplots(figsize=(8, 5))
    axes.plot(clicks, miou, marker="o", linewidth=2, label=model_label)
    axes.set_title(f"{result.name} ({result.summary.n_objects} objects)")
    axes.set_xlabel("Number of clicks")
    axes.set_ylabel("mIoU (%)")
    axes.set_xticks(clicks)
    axes.grid(True)
    axes.legend(loc="lower right")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    atomic_write_bytes(path, image.getvalue())


def run_evaluation(
    datasets: Sequence[tuple[str, EvalDataset]],
    make_predictor: PredictorFactory,
    output_dir: str | Path,
    settings: EvalSettings | None = None,
    model_label: str = "model",
    run_info: dict | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate every dataset, print the table, write JSON/CSV/PNGs into ``output_dir``; return the JSON."""
    settings = settings or EvalSettings()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = [
        evaluate_dataset(name, dataset, make_predictor(name), settings, progress)
        for name, dataset in datasets
    ]
    print(results_table(results, settings, model_label))

    report = {
        "model": model_label,
        **(run_info or {}),
        "settings": {
            "target_iou": settings.target_iou,
            "max_clicks": settings.max_clicks,
            "threshold": settings.threshold,
            "iou_thresholds": list(settings.iou_thresholds),
        },
        "datasets": {r.name: r.to_dict() for r in results},
    }
    atomic_write_text(output_dir / "results.json", json.dumps(report, indent=1))
    write_csv(results, settings, output_dir / "results.csv")
    for result in results:
        safe = re.sub(r"[^A-Za-z0-9_.()+-]+", "_", result.name)
        plot_miou(result, model_label, output_dir / f"miou_{safe}.png")
    return report


# -- command line -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One ``--datasets`` entry: the reader (``name``), its folder and the label it is reported under."""

    label: str
    name: str
    path: Path


def parse_dataset_specs(spec: str, data_root: str | Path) -> list[DatasetSpec]:
    """``"GrabCut,voc:Export=/data/voc,mr:Export=/data/mr"`` -> one :class:`DatasetSpec` per entry.

    ``LABEL:NAME=PATH`` names the row of the table and the key in ``results.json`` (default: NAME).
    Two unlabelled sets of the same reader are told apart by their folder names: ``Export(voc)``.
    Labels must be unique (results would overwrite each other).
    """
    specs = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        head, _, path = item.partition("=")
        label, colon, name = head.partition(":")
        if not colon:
            label, name = "", label
        name = canonical_name(name.strip())
        folder = Path(path) if path else default_path(name, data_root)
        specs.append(DatasetSpec(label.strip(), name, folder))
    if not specs:
        raise ValueError("no dataset given")
    counts: dict[str, int] = {}
    for s in specs:
        if not s.label:
            counts[s.name] = counts.get(s.name, 0) + 1
    specs = [s if s.label else DatasetSpec(s.name if counts[s.name] == 1 else f"{s.name}({s.path.name})",
                                           s.name, s.path) for s in specs]  # fmt: skip
    labels = [s.label for s in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"two datasets would be reported as {', '.join(repeated)}: give each its own label "
                         "(LABEL:NAME=PATH, e.g. voc:Export=/data/voc)")  # fmt: skip
    return specs


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found before any click was simulated."""

    problems: list[str]  # unusable samples (e.g. mask size != image size): the run is refused
    without_objects: list[str]  # samples whose mask holds no object: skipped, and said so
    objects: int = 0  # objects in all samples (each is clicked on up to --max-clicks times)
    crowded: list[str] = field(default_factory=list)  # "name (N objects)" beyond MANY_OBJECTS: said so


MANY_OBJECTS = 1000  # more objects than this in one mask is worth a warning (e.g. 65,535 instance ids)


def check_dataset(dataset: EvalDataset) -> DatasetCheck:
    """Read every sample once, so that a broken one is reported before hours of evaluation, not during."""
    check = DatasetCheck([], [])
    for name in dataset.names:
        try:
            sample = dataset._load(name)
        except DatasetError as error:
            check.problems.append(str(error).splitlines()[0])
            continue
        count = len(sample.object_ids)
        check.objects += count
        if not count:
            check.without_objects.append(name)
        elif count > MANY_OBJECTS:
            check.crowded.append(f"{name} ({count} objects)")
    return check


def build_arg_parser() -> argparse.ArgumentParser:
    from model.predictor import INTERACTIVE_MAX_SIZE

    parser = argparse.ArgumentParser(
        prog="isegformer-eval",
        description="Number-of-clicks (NoC) evaluation with the RITM/iSegFormer click simulator.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, help="model checkpoint (.pth); default: the app's default model"
    )
    source.add_argument("--engine", help="a built-in engine (no weights) instead of a checkpoint")
    parser.add_argument(
        "--datasets",
        default="GrabCut,Berkeley,DAVIS",
        help="comma-separated dataset names (GrabCut, Berkeley, DAVIS, COCO_MVal, SBD, PascalVOC, BraTS, "
        "ssTEM, OAIZIB, Export); NAME=PATH reads NAME's layout from PATH; "
        "LABEL:NAME=PATH reports it as LABEL",
    )
    parser.add_argument("--data-root", type=Path, default=Path("datasets"), help="datasets folder")
    parser.add_argument("--iou", type=float, default=0.90, help="target IoU: stop clicking once reached")
    parser.add_argument("--max-clicks", type=int, default=20, help="clicks per object at most")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="probability threshold of the mask (pixels above it are the object)",
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--output", type=Path, default=Path("eval_results"), help="output folder")
    parser.add_argument("--no-zoom-in", action="store_true", help="disable ZoomIn (on by default, as RITM)")
    parser.add_argument(
        "--no-flip", action="store_true", help="no horizontal-flip averaging (the original always flips)"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        help=f"limit the network's input to this many pixels on its longer side; 0: full size (the original "
        f"protocol); default: {INTERACTIVE_MAX_SIZE}, as the app, for the networks this project trains, full "
        "size for the original checkpoints; networks only",
    )
    parser.add_argument(
        "--no-first-click-zoom",
        action="store_true",
        help="no zoomed second pass refining a small object's first mask (on by default, as in the app, "
        "for the networks this project trains; the original checkpoints never have it); networks only",
    )
    parser.add_argument(
        "--local-edits",
        action="store_true",
        help="a click always takes the pixel under it and never takes away most of the mask far from "
        "itself, as the app does for networks (model.local_edits; off by default: the original protocol)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def default_model_source() -> tuple[str | None, Path | None, str]:
    """(engine, checkpoint, why) of the photo default the app starts with: the bundled trained network
    where it measured better than the classical engine (``resources.modality_defaults``), else that engine."""
    from resources import DEFAULT_MODEL_NAME, bundled_model, modality_defaults

    engine, why = modality_defaults()["photo"]
    path = bundled_model()
    if engine == DEFAULT_MODEL_NAME and path is not None:
        return None, path, why
    return engine, None, why


def engine_factory(name: str) -> PredictorFactory:
    """Factory of a built-in engine (imported lazily: the engines are optional for this module)."""
    from model.engines import ENGINE_NAMES, build_engine

    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    return lambda dataset_name: build_engine(name)


def network_input_limits(max_size: int | None, network) -> tuple[int | None, int | None]:
    """(longest side the network's input is shrunk to, longest side a shorter input is enlarged to), None
    for no limit, for ``--max-size``: 0 is the image as it is; N is N px, no floor; None is the app's
    :data:`~model.predictor.INTERACTIVE_MAX_SIZE` and :data:`~model.predictor.INTERACTIVE_MIN_SIZE` for a
    network this project saved (its checkpoint carries our metadata: it is evaluated as the app runs it)
    and the image as it is for the original checkpoints (the original protocol)."""
    from model.predictor import INTERACTIVE_MAX_SIZE, INTERACTIVE_MIN_SIZE, trained_here

    if max_size is None:
        return (INTERACTIVE_MAX_SIZE, INTERACTIVE_MIN_SIZE) if trained_here(network) else (None, None)
    return max_size or None, None


def checkpoint_factory(
    checkpoint: Path,
    device: str,
    zoom_in: bool,
    flip: bool,
    max_size: int | None = None,
    first_click_zoom: bool = True,
) -> PredictorFactory:
    """Factory of the network predictor: the model is loaded once, a predictor is made per dataset
    with ZoomIn's target size 600 on DAVIS and 400 elsewhere (the original's "cvpr" mode) and the
    network's input limited on its longer side by :func:`network_input_limits` (``max_size`` 0: full size;
    None: as the app for this project's networks, full size for the original checkpoints).
    ZoomIn is the app's (:func:`model.predictor.interactive_zoom_in`: this project's networks refine a
    small object's first mask zoomed) unless ``first_click_zoom`` is False (the original's ZoomIn)."""
    from model.checkpoint import load_checkpoint
    from model.predictor import Predictor, interactive_zoom_in
    from model.transforms import ZoomIn

    network = load_checkpoint(checkpoint, device)
    max_size, min_size = network_input_limits(max_size, network)

    def make(dataset_name: str) -> ClickPredictor:
        zoom = None
        if zoom_in:
            target = ZOOM_IN_TARGET_SIZE.get(dataset_name, DEFAULT_ZOOM_IN_TARGET_SIZE)
            zoom = interactive_zoom_in(network, target) if first_click_zoom else ZoomIn(target_size=target)
        return Predictor(
            network, device=device, zoom_in=zoom, with_flip=flip, max_size=max_size, min_size=min_size
        )

    return make


def with_local_edits(make: PredictorFactory, threshold: float) -> PredictorFactory:
    """``make`` whose predictors' clicks take the pixel under them and never lose the object far from them,
    judged at ``threshold`` (:class:`model.local_edits.LocalEdits`, what the app does)."""
    from model.local_edits import LocalEdits

    return lambda dataset_name: LocalEdits(make(dataset_name), threshold)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """ValueError for a device name torch does not know or a CUDA device that is not there."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"invalid --device {device!r}: {error}") from error
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isegformer-eval``; returns the exit status (2 on bad input)."""
    args = build_arg_parser().parse_args(argv)
    if args.max_clicks < 1 or not 0.0 < args.iou <= 1.0:
        print("isegformer-eval: --max-clicks must be >= 1 and --iou in (0, 1]", file=sys.stderr)
        return 2
    if args.max_size is not None and (args.max_size < 0 or 0 < args.max_size < 32):
        print("isegformer-eval: --max-size must be 0 (full size) or at least 32 pixels", file=sys.stderr)
        return 2
    settings = EvalSettings(target_iou=args.iou, max_clicks=args.max_clicks, threshold=args.threshold)
    if not args.engine and args.checkpoint is None:
        args.engine, args.checkpoint, why = default_model_source()
        chosen = f"engine {args.engine}" if args.engine else f"checkpoint {args.checkpoint}"
        print(f"isegformer-eval: evaluating the photo default, {chosen} ({why})", file=sys.stderr)
    try:
        specs = parse_dataset_specs(args.datasets, args.data_root)
        datasets = [(spec.label, open_dataset(spec.name, spec.path)) for spec in specs]
        problems = []
        for label, dataset in datasets:
            check = check_dataset(dataset)
            problems += [f"{label}: {problem}" for problem in check.problems]
            if check.without_objects:
                more = " ..." if len(check.without_objects) > 10 else ""
                shown = ", ".join(check.without_objects[:10]) + more
                print(f"isegformer-eval: {label}: {len(check.without_objects)} sample(s) without any object "
                      f"are skipped: {shown}", file=sys.stderr)  # fmt: skip
            if check.crowded:
                print(f"isegformer-eval: {label}: warning: {', '.join(check.crowded[:5])} — every object is "
                      f"clicked on up to {args.max_clicks} times ({check.objects} objects in all): this run "
                      "may take hours; are these masks instance ids?", file=sys.stderr)  # fmt: skip
        if problems:
            raise ValueError(f"{len(problems)} sample(s) cannot be evaluated (nothing was run):\n  "
                             + "\n  ".join(problems))  # fmt: skip
        if args.engine:
            make_predictor, label = engine_factory(args.engine), f"engine:{args.engine}"
            run_info: dict = {"engine": args.engine}
        else:
            from model.checkpoint import CheckpointError

            device = args.device or default_device()
            check_device(device)
            if not args.checkpoint.is_file():
                raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
            try:
                make_predictor = checkpoint_factory(
                    args.checkpoint,
                    device,
                    not args.no_zoom_in,
                    not args.no_flip,
                    args.max_size,
                    first_click_zoom=not args.no_first_click_zoom,
                )
            except CheckpointError as error:
                raise ValueError(f"cannot load {args.checkpoint}: {error}") from error
            label = args.checkpoint.stem
            probe = make_predictor("")  # the settings the factory chose
            limit = probe.limit
            max_size = limit.max_size if limit is not None else None
            min_size = limit.min_size if limit is not None else None
            first_click = bool(probe.zoom_in is not None and probe.zoom_in.recompute_with_first_pass)
            if args.max_size is None and max_size is not None:
                note = f"the network sees at most {max_size} px on its longer side, as in the app"
                if min_size is not None:
                    note += f" (smaller images enlarged to {min_size} px)"
                print(f"isegformer-eval: {note} (--max-size 0: full size, the original protocol)",
                      file=sys.stderr)  # fmt: skip
            if first_click:
                print("isegformer-eval: a small object's first mask is refined zoomed, as in the app "
                      "(--no-first-click-zoom: the original ZoomIn)", file=sys.stderr)  # fmt: skip
            run_info = {"checkpoint": str(args.checkpoint), "device": device}
            run_info.update({"zoom_in": not args.no_zoom_in, "flip": not args.no_flip, "max_size": max_size,
                             "min_size": min_size, "first_click_zoom": first_click})  # fmt: skip
        if args.local_edits:
            make_predictor = with_local_edits(make_predictor, args.threshold)
        run_info["local_edits"] = args.local_edits
        require_output_folder(args.output)  # before the run, not after hours of it
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"isegformer-eval: {error}", file=sys.stderr)
        return 2
    try:
        run_evaluation(datasets, make_predictor, args.output, settings, label, run_info, not args.no_progress)
    except DatasetError as error:
        print(f"isegformer-eval: {error}", file=sys.stderr)
        return 2
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
