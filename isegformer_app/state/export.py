"""Export of annotations at the images' full resolution.

Layout under ``OUT``::

    images/<name>             copy of the image file
    masks/<stem>.png          instance ids (0 = background; uint8, uint16 when > 255 instances)
    classes/<stem>.png        class ids as a palette PNG (colours of the label list)
    objects/<stem>/<id>.png   one binary PNG (0/255) per instance
    labels.json               classes and, per image, each instance's class / label / colour
    annotations_coco.json     COCO instances with RLE masks (pycocotools)

Instance id = 1-based z-order position (later objects cover earlier ones in ``masks``); COCO and
the per-object PNGs hold each object's whole mask. Masks made on a downscaled working image are
scaled back with nearest-neighbour. Masks follow the image as displayed: for a JPEG with an EXIF
orientation the copy in ``images/`` keeps its tag (readers that honour EXIF, e.g. ``cv2.imread``,
line up) and ``labels.json`` marks it ``"exif_rotated": true``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from isegformer_app.state.autosave import read_sidecar
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import atomic_write, png_bytes
from isegformer_app.state.labels import Color, LabelList


@dataclass
class ExportObject:
    label: str
    color: Color
    mask: np.ndarray  # HxW bool, working resolution


@dataclass
class ExportItem:
    image_path: Path
    full_size: tuple[int, int]  # (height, width)
    objects: list[ExportObject]
    exif_rotated: bool = False


def item_from_document(doc: Document) -> ExportItem:
    objects = [ExportObject(o.label, o.color, o.mask) for o in doc.objects]
    return ExportItem(doc.path, doc.image.full_size, objects, doc.image.exif_rotated)


def item_from_sidecar(image_path: Path, sidecar: Path) -> ExportItem:
    data = read_sidecar(sidecar)
    objects = [
        ExportObject(o["label"], tuple(int(v) for v in o["color"]), m)
        for o, m in zip(data.meta["objects"], data.masks, strict=True)
    ]
    h, w = (int(v) for v in data.meta["full_size"])
    return ExportItem(image_path, (h, w), objects, bool(data.meta.get("exif_rotated", False)))


def full_size_mask(mask: np.ndarray, full_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a HxW bool mask to ``full_size`` (height, width)."""
    if mask.shape == tuple(full_size):
        return mask
    h, w = full_size
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def export_items(
    items: Sequence[ExportItem],
    out_dir: str | Path,
    labels: LabelList,
    progress: Callable[[int, int, str], bool] | None = None,
) -> int:
    """Write ``items`` to ``out_dir``; returns the number of images exported.

    ``progress(done, total, name)`` is called before each image (returning False cancels) and, with a
    fractional ``done``, as each object of a large image is written.
    """
    out = Path(out_dir)
    coco: dict = {"images": [], "annotations": [], "categories": []}
    per_image: dict[str, dict] = {}
    stems = [it.image_path.stem for it in items]
    if len(set(stems)) != len(stems):
        raise ValueError("two images share a file stem; their masks would overwrite each other")
    done = 0
    for image_id, item in enumerate(items, start=1):
        if progress is not None and progress(done, len(items), item.image_path.name) is False:
            break
        step = None
        if progress is not None:
            def step(fraction: float, done=done, name=item.image_path.name) -> None:
                progress(done + fraction, len(items), name)
        per_image[item.image_path.stem] = _export_one(item, image_id, out, labels, coco, step)
        done += 1
    for cls_id, cls in enumerate(labels.classes, start=1):
        coco["categories"].append({"id": cls_id, "name": cls.name, "supercategory": ""})
    meta = {
        "classes": [
            {"id": i, "name": c.name, "color": list(c.color)} for i, c in enumerate(labels.classes, 1)
        ],
        "images": per_image,
    }
    atomic_write(out / "labels.json", json.dumps(meta, indent=1).encode("utf-8"))
    atomic_write(out / "annotations_coco.json", json.dumps(coco).encode("utf-8"))
    if progress is not None:
        progress(done, len(items), "")
    return done


def _export_one(item: ExportItem, image_id: int, out: Path, labels: LabelList, coco: dict,
                step: Callable[[float], None] | None = None) -> dict:
    h, w = item.full_size
    stem = item.image_path.stem
    atomic_write(out / "images" / item.image_path.name, item.image_path.read_bytes())
    dtype = np.uint8 if len(item.objects) <= 255 else np.uint16
    instances = np.zeros((h, w), dtype)
    classes = np.zeros((h, w), np.uint8)
    records = []
    coco["images"].append({"id": image_id, "file_name": item.image_path.name, "width": w, "height": h})
    for inst_id, obj in enumerate(item.objects, start=1):
        if step is not None:
            step(0.1 + 0.7 * (inst_id - 1) / len(item.objects))
        mask = full_size_mask(obj.mask, (h, w))
        class_id = labels.class_id(obj.label)
        instances[mask] = inst_id
        classes[mask] = class_id
        atomic_write(out / "objects" / stem / f"{inst_id:03d}.png", png_bytes(mask))
        records.append({"id": inst_id, "class_id": class_id, "label": obj.label, "color": list(obj.color)})
        if mask.any():
            ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            bbox = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": class_id,
                "segmentation": _rle(mask), "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0,
                "instance_id": inst_id,
            })  # fmt: skip
    if len(labels) > 255:
        raise ValueError("more than 255 classes cannot be written as a palette PNG")
    if step is not None:
        step(0.8)
    atomic_write(out / "masks" / f"{stem}.png", png_bytes(instances))
    atomic_write(out / "classes" / f"{stem}.png", png_bytes(classes, palette=labels.palette()))
    return {"file": item.image_path.name, "height": h, "width": w, "exif_rotated": item.exif_rotated,
            "instances": records}  # fmt: skip


def collect_items(
    paths: Iterable[Path], open_doc: Document | None, sidecar_for: Callable[[Path], Path]
) -> list[ExportItem]:
    """Export items for a folder: the open document from memory, the others from their sidecars.

    Images without any object are left out.
    """
    items = []
    for path in paths:
        if open_doc is not None and path == open_doc.path:
            item = item_from_document(open_doc)
        elif sidecar_for(path).is_file():
            item = item_from_sidecar(path, sidecar_for(path))
        else:
            continue
        if item.objects:
            items.append(item)
    return items
