"""Export of annotations at the images' full resolution.

Layout under ``OUT``::

    images/<name>             copy of the image file (of a volume slice: its PNG as the model sees it)
    masks/<stem>.png          instance ids (0 = background; uint8, uint16 when > 255 instances)
    classes/<stem>.png        class ids as a palette PNG (colours of the label list); 16-bit grey
                              when there are more than 255 classes
    objects/<stem>/<id>.png   one binary PNG (0/255) per instance
    labels.json               classes and, per image, each instance's class / label / colour
    annotations_coco.json     COCO instances with RLE masks (pycocotools)

An image marked "done: no objects" (a negative image) is exported with all-zero masks, an empty
instance list (``"no_objects": true`` in ``labels.json``) and a COCO image entry without annotations.

Instance id = 1-based z-order position (later objects cover earlier ones in ``masks``); COCO and
the per-object PNGs hold each object's whole mask. Masks made on a downscaled working image are
scaled back with nearest-neighbour. Masks follow the image as displayed: for a JPEG with an EXIF
orientation the copy in ``images/`` keeps its tag (readers that honour EXIF, e.g. ``cv2.imread``,
line up) and ``labels.json`` marks it ``"exif_rotated": true``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from isegformer_app.state.autosave import SidecarError, SidecarMismatch, check_sidecar_fits, read_sidecar
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import DEFAULT_MAX_SIDE, ImageLoadError, load_image, png_bytes
from isegformer_app.state.labels import Color, LabelList, as_color
from isegformer_app.volumes.progress import CancelFlag, ProgressCallback
from model.atomic_io import atomic_write_bytes as atomic_write
from model.atomic_io import current_umask, fsync_dir
from model.untrusted import open_image, parse_json, path_inside


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
    no_objects: bool = False  # checked by the user: a negative image, exported without objects
    make_image: Callable[[], np.ndarray] | None = None  # pixels written as ``image_path.name`` (a volume
    # slice, HxWx3 uint8 or HxW uint8/uint16) instead of a copy of the file ``image_path``

    @property
    def exportable(self) -> bool:
        """Finished objects, or the mark "done: no objects"."""
        return bool(self.objects) or self.no_objects


def item_from_document(doc: Document) -> ExportItem:
    objects = [ExportObject(o.label, o.color, o.mask) for o in doc.objects]
    return ExportItem(doc.path, doc.image.full_size, objects, doc.image.exif_rotated, doc.no_objects)


def item_from_sidecar(image_path: Path, sidecar: Path, max_side: int = DEFAULT_MAX_SIDE) -> ExportItem | None:
    """An image's objects from its autosave, checked against the image as opening checks it (working size
    and pixel digest at ``max_side``); the size written is the image's own, never the autosave's. None
    when the autosave holds nothing to export (the image is then not decoded).

    Raises SidecarError (the image is skipped) for a malformed autosave, its SidecarMismatch for one made
    for another image, and ImageLoadError for an image that cannot be read any more.
    """
    data = read_sidecar(sidecar)
    if not data.meta.get("objects") and not data.meta.get("no_objects"):
        return None
    image = load_image(image_path, max_side)
    check_sidecar_fits(data.meta, image, sidecar.name)
    try:
        objects = [
            ExportObject(str(o["label"]), as_color(o["color"]), m)
            for o, m in zip(data.meta["objects"], data.masks, strict=True)
        ]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise SidecarError(f"Autosave file {sidecar.name} is unreadable ({exc}).") from exc
    return ExportItem(image_path, image.full_size, objects, image.exif_rotated,
                      bool(data.meta.get("no_objects", False)))  # fmt: skip


def full_size_mask(mask: np.ndarray, full_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a HxW bool mask to ``full_size`` (height, width)."""
    if mask.shape == tuple(full_size):
        return mask
    h, w = full_size
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


EXPORT_FORMAT = "isegformer-export"
EXPORT_VERSION = 1
_STAGING_TAG = ".isegformer-export-"
_STALE_STAGING_SECONDS = 600


class ExportTargetError(ValueError):
    """The chosen export folder cannot be used as asked (the message is meant for the user)."""


def export_target_kind(out_dir: str | Path) -> str:
    """``"new"`` (missing), ``"empty"``, ``"export"`` (an earlier export of ours) or ``"other"``.

    An export killed between the two renames of its swap (see :func:`recover_interrupted_swap`) is put
    back in place first: this is the first look any export takes at its folder.
    """
    out = Path(out_dir)
    recover_interrupted_swap(out)
    if not out.exists():
        return "new"
    if not out.is_dir():
        return "other"
    if not any(out.iterdir()):
        return "empty"
    try:
        meta = parse_json((out / "labels.json").read_text("utf-8"))
    except (OSError, ValueError):
        return "other"
    ours = isinstance(meta, dict) and isinstance(meta.get("images"), dict) and "classes" in meta
    return "export" if ours and meta.get("format", EXPORT_FORMAT) == EXPORT_FORMAT else "other"


def exported_stems(out_dir: str | Path) -> list[str]:
    """The image stems an earlier export in ``out_dir`` holds ([] if there is none)."""
    if export_target_kind(out_dir) != "export":
        return []
    return list(parse_json((Path(out_dir) / "labels.json").read_text("utf-8"))["images"])


@dataclass
class EarlierImage:
    """An image of an earlier export in the target folder; its masks are read only when it is rewritten,
    one image at a time (an export can hold more masks than fit in memory)."""

    out: Path
    stem: str
    entry: dict

    @property
    def image_path(self) -> Path:
        """The image copy (ValueError when ``labels.json`` names a file outside ``images/``)."""
        return path_inside(self.out / "images", self.entry["file"])

    def load(self) -> ExportItem:
        try:
            h, w = int(self.entry["height"]), int(self.entry["width"])
            objects = []
            for rec in self.entry["instances"]:
                name = f"objects/{self.stem}/{int(rec['id']):03d}.png"
                with open_image(path_inside(self.out, name), ("PNG",)) as png:
                    mask = np.asarray(png) > 0
                if mask.shape != (h, w):
                    raise ValueError(f"{name} has the wrong size")
                objects.append(ExportObject(str(rec["label"]), as_color(rec["color"]), mask))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _incomplete(self.out, exc) from exc
        return ExportItem(self.image_path, (h, w), objects, bool(self.entry.get("exif_rotated", False)),
                          bool(self.entry.get("no_objects", False)))  # fmt: skip


def _incomplete(out: Path, why: object) -> ExportTargetError:
    return ExportTargetError(f"The earlier export in {out} is incomplete ({why}); "
                             "choose another folder or export all images again.")  # fmt: skip


def earlier_images(out_dir: str | Path) -> list[EarlierImage]:
    """The images of an earlier export (checked to be there; masks are read later, see EarlierImage)."""
    out = Path(out_dir)
    try:
        meta = parse_json((out / "labels.json").read_text("utf-8"))
        images = [EarlierImage(out, str(stem), dict(entry)) for stem, entry in meta["images"].items()]
        for image in images:
            path_inside(out / "objects", image.stem)  # its masks are read from objects/<stem>/
            if not image.image_path.is_file():
                raise ValueError(f"images/{image.entry['file']} is missing")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _incomplete(out, exc) from exc
    return images


def export_items(
    items: Sequence[ExportItem | EarlierImage],
    out_dir: str | Path,
    labels: LabelList,
    report: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    overwrite: bool = False,
    keep_other_images: bool = False,
) -> int:
    """Write ``items`` as a dataset in ``out_dir``; returns the number of images exported.

    Everything is written into a temporary folder beside ``out_dir`` and swapped in at the end, so a
    cancelled, failed or killed export (full disk) leaves the folder as it was, and the folder never
    mixes two exports: it holds exactly the images that ``labels.json`` and ``annotations_coco.json``
    describe. A folder that holds an earlier export is replaced only with ``overwrite``; with
    ``keep_other_images`` its other images stay (rewritten with the current labels), which is how
    one image is added to an export. A non-empty folder that is not an export is refused.

    ``report(fraction, image name)`` follows the images (and the objects of a large image); ``cancel``
    set stops before the next image: nothing is changed and 0 is returned (the contract of
    :mod:`isegformer_app.volumes.progress`, shared by loading, export and propagation).
    """
    out = Path(os.path.abspath(out_dir))
    kind = export_target_kind(out)
    if kind == "other":
        raise ExportTargetError(f"{out} is not empty and holds no isegformer export: "
                                "choose an empty folder (or an earlier export to replace).")  # fmt: skip
    if kind == "export" and not overwrite:
        raise ExportTargetError(f"{out} already holds an export; confirm that it may be replaced.")
    items = list(items)
    if keep_other_images and kind == "export":
        new = {it.image_path.stem: it for it in items}
        items = [new.pop(it.stem, it) for it in earlier_images(out)] + list(new.values())
    stems = [it.image_path.stem for it in items]
    if len(set(stems)) != len(stems):
        raise ValueError("two images share a file stem; their masks would overwrite each other")
    staging = _make_staging_folder(out)
    try:
        done = _write_dataset(items, staging, labels, report, cancel)
        if done < len(items):  # cancelled
            _remove_tree(staging)
            return 0
        if staging != out:
            _swap_in(staging, out)
    except BaseException:
        _remove_tree(staging)
        raise
    return done


def _write_dataset(items: Sequence[ExportItem | EarlierImage], out: Path, labels: LabelList,
                   report: ProgressCallback | None, cancel: CancelFlag | None) -> int:  # fmt: skip
    coco: dict = {"images": [], "annotations": [], "categories": []}
    per_image: dict[str, dict] = {}
    done = 0
    for image_id, item in enumerate(items, start=1):
        if cancel is not None and cancel.is_set():
            return done
        if report is not None:
            report(done / len(items), item.image_path.name)
        if isinstance(item, EarlierImage):
            item = item.load()
        step = None
        if report is not None:
            def step(fraction: float, done=done, name=item.image_path.name) -> None:
                report((done + fraction) / len(items), name)
        per_image[item.image_path.stem] = _export_one(item, image_id, out, labels, coco, step)
        done += 1
    for cls_id, cls in enumerate(labels.classes, start=1):
        coco["categories"].append({"id": cls_id, "name": cls.name, "supercategory": ""})
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "classes": [
            {"id": i, "name": c.name, "color": list(c.color)} for i, c in enumerate(labels.classes, 1)
        ],
        "images": per_image,
    }
    atomic_write(out / "annotations_coco.json", json.dumps(coco).encode("utf-8"))
    atomic_write(out / "labels.json", json.dumps(meta, indent=1).encode("utf-8"))  # last: marks it complete
    if report is not None:
        report(1.0, "")
    return done


def _make_staging_folder(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system, so the swap is a rename); ``out`` itself when
    the parent cannot be written and ``out`` is missing or empty (nothing there to mix with)."""
    parent = out.parent
    for stale in parent.glob(f".{out.name}{_STAGING_TAG}*") if parent.is_dir() else ():
        try:
            if time.time() - stale.stat().st_mtime > _STALE_STAGING_SECONDS:  # left by a killed export
                _remove_tree(stale)
        except OSError:
            pass
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING_TAG}", dir=parent))
    except OSError as exc:
        if export_target_kind(out) in ("new", "empty"):
            out.mkdir(parents=True, exist_ok=True)
            return out
        raise ExportTargetError(f"Cannot replace the export in {out}: its parent folder {parent} cannot be "
                                f"written ({exc.strerror or exc}), and an export is written beside its "
                                "folder, then swapped in. Choose a folder in a writable place.") from exc
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
    return staging


def recover_interrupted_swap(out: Path) -> str:
    """Undo the damage of a kill between the two renames of :func:`_swap_in` (``out`` missing, the earlier
    export in ``.<out>…-export-….old`` and the finished new one beside it): the new one is put in place
    (it was complete before the swap began), else the earlier one; returns what was done ("" if nothing)."""
    out = Path(os.path.abspath(out))
    if out.exists() or not out.parent.is_dir():
        return ""
    for old in sorted(out.parent.glob(f".{out.name}{_STAGING_TAG}*.old")):
        new = old.with_name(old.name[: -len(".old")])
        try:
            if (new / "labels.json").is_file():
                os.rename(new, out)
                _remove_tree(old)
                fsync_dir(out.parent)
                return f"the export interrupted in {out} was completed"
            os.rename(old, out)
            fsync_dir(out.parent)
            return f"the earlier export in {out} was put back"
        except OSError:
            continue
    return ""


def _swap_in(staging: Path, out: Path) -> None:
    """Put the finished ``staging`` folder in place of ``out`` (the earlier contents go only after)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(staging, out)
    else:
        old = staging.with_name(staging.name + ".old")
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            raise
        _remove_tree(old)
    fsync_dir(out.parent)


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _export_one(item: ExportItem, image_id: int, out: Path, labels: LabelList, coco: dict,
                step: Callable[[float], None] | None = None) -> dict:
    h, w = item.full_size
    stem = item.image_path.stem
    for obj in item.objects:
        labels.ensure(obj.label)
    if len(labels) > 65535:
        raise ValueError("more than 65535 classes cannot be written as a class PNG")
    image = png_bytes(item.make_image()) if item.make_image is not None else item.image_path.read_bytes()
    atomic_write(out / "images" / item.image_path.name, image)
    dtype = np.uint8 if len(item.objects) <= 255 else np.uint16
    instances = np.zeros((h, w), dtype)
    classes = np.zeros((h, w), np.uint8 if len(labels) <= 255 else np.uint16)
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
    if step is not None:
        step(0.8)
    atomic_write(out / "masks" / f"{stem}.png", png_bytes(instances))
    palette = labels.palette() if classes.dtype == np.uint8 else None  # 16-bit: plain grey values
    atomic_write(out / "classes" / f"{stem}.png", png_bytes(classes, palette=palette))
    entry = {"file": item.image_path.name, "height": h, "width": w, "exif_rotated": item.exif_rotated,
             "instances": records}  # fmt: skip
    if item.no_objects and not records:
        entry["no_objects"] = True
    return entry


def copy_item(item: ExportItem) -> ExportItem:
    """An item whose masks no later edit of the document can change."""
    objects = [ExportObject(o.label, o.color, o.mask.copy()) for o in item.objects]
    return ExportItem(item.image_path, item.full_size, objects, item.exif_rotated, item.no_objects,
                      item.make_image)  # fmt: skip


SkipReason = Literal["unreadable", "autosave unreadable", "autosave of another image", "not annotated",
                     "no finished object"]


@dataclass(frozen=True)
class SkippedImage:
    """An image an export left out: ``reason`` (one of :data:`SkipReason`) and the details of it."""

    path: Path
    reason: SkipReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}" + (f" — {self.detail}" if self.detail else "")


def describe_skipped(skipped: Sequence[SkippedImage]) -> str:
    """One line naming the skipped images grouped by reason: "skipped 3 — unreadable: a.jpg, b.png;
    not annotated: c.png" ("" when none was skipped); the details are in each :class:`SkippedImage`."""
    if not skipped:
        return ""
    groups: dict[str, list[str]] = {}
    for item in skipped:
        groups.setdefault(item.reason, []).append(item.path.name)
    parts = "; ".join(f"{reason}: {', '.join(names)}" for reason, names in groups.items())
    return f"skipped {len(skipped)} — {parts}"


@dataclass
class ExportSummary:
    exported: int  # images written (0 when cancelled: the folder was left as it was)
    skipped: list[SkippedImage]  # each image of the plan that was not exported, with its reason


@dataclass
class ExportPlan:
    """What one export writes. Made on the GUI thread (the open document is copied now), run anywhere:
    :meth:`run` reads the other images' autosaves and writes, e.g. in a background thread."""

    paths: list[Path]
    open_item: ExportItem | None
    sidecar_for: Callable[[Path], Path]
    keep_other_images: bool = False  # exporting one image into an earlier export keeps the others
    unreadable: dict[Path, str] | None = None  # images known to be unreadable -> why
    max_side: int = DEFAULT_MAX_SIDE  # the project's working size: autosaves are checked at it

    def collect(self) -> tuple[list[ExportItem], list[SkippedImage]]:
        """The items to write (images with a finished object or marked "done: no objects") and the
        skipped images with their reasons."""
        items: list[ExportItem] = []
        skipped: list[SkippedImage] = []
        unreadable = self.unreadable or {}
        for path in self.paths:
            if path in unreadable:
                skipped.append(SkippedImage(path, "unreadable", unreadable[path]))
                continue
            if self.open_item is not None and path == self.open_item.image_path:
                item = self.open_item
            elif self.sidecar_for(path).is_file():
                try:
                    item = item_from_sidecar(path, self.sidecar_for(path), self.max_side)
                except ImageLoadError as exc:
                    skipped.append(SkippedImage(path, "unreadable", str(exc)))
                    continue
                except SidecarMismatch as exc:
                    skipped.append(SkippedImage(path, "autosave of another image", str(exc)))
                    continue
                except SidecarError as exc:
                    skipped.append(SkippedImage(path, "autosave unreadable", str(exc)))
                    continue
            else:
                skipped.append(SkippedImage(path, "not annotated"))
                continue
            if item is not None and item.exportable:
                items.append(item)
            else:
                skipped.append(SkippedImage(path, "no finished object"))
        return items, skipped

    def run(self, out_dir: str | Path, labels: LabelList, report: ProgressCallback | None = None,
            cancel: CancelFlag | None = None, overwrite: bool = False) -> ExportSummary:  # fmt: skip
        items, skipped = self.collect()
        if not items:
            raise ValueError("Nothing to export: no image has a finished object (or the mark "
                             "\"done: no objects\") yet.")
        exported = export_items(items, out_dir, labels, report, cancel, overwrite=overwrite,
                                keep_other_images=self.keep_other_images)  # fmt: skip
        return ExportSummary(exported, skipped)


def plan_export(paths: Iterable[Path], open_doc: Document | None, sidecar_for: Callable[[Path], Path],
                keep_other_images: bool = False, unreadable: dict[Path, str] | None = None,
                max_side: int = DEFAULT_MAX_SIDE) -> ExportPlan:  # fmt: skip
    """An export of ``paths``: the open document from memory (copied), the others from their sidecars
    (checked against their images at ``max_side``); images in ``unreadable`` (path -> why) are skipped
    with that reason."""
    open_item = copy_item(item_from_document(open_doc)) if open_doc is not None else None
    return ExportPlan(list(paths), open_item, sidecar_for, keep_other_images, dict(unreadable or {}),
                      max_side)  # fmt: skip
