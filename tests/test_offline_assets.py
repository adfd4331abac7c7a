"""training.data.offline_assets: object sources decoded into the asset cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import offline_assets
from training.data.composite import ALPHA_OBJECT_THRESHOLD, _read_rgba


def _costume(extract: Path, name: str, suffix: str) -> np.ndarray:
    """A photo-like costume with a transparent border, written as Scratch ships it; returns its RGBA."""
    rng = np.random.default_rng(len(name))
    rgba = np.zeros((60, 40, 4), np.uint8)
    rgba[10:50, 8:32, :3] = rng.integers(0, 256, (40, 24, 3))
    rgba[10:50, 8:32, 3] = 255
    path = extract / offline_assets.SCRATCH_COSTUMES / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgba, "RGBA")
    if suffix == ".gif":  # a palette with one transparent index, as the package's GIFs
        paletted = image.convert("RGB").quantize(255)
        data = np.asarray(paletted).copy()
        data[rgba[:, :, 3] == 0] = 255
        gif = Image.fromarray(data, "P")
        gif.putpalette(paletted.getpalette()[: 255 * 3] + [0, 0, 0])
        gif.save(path, transparency=255)
    else:
        image.save(path)
    return rgba


def test_scratch_photo_costumes_become_rgba_objects_the_composites_read(tmp_path: Path) -> None:
    cache, extract = tmp_path, tmp_path / "extract"
    people, vehicle = offline_assets.SCRATCH_PHOTO_COSTUMES[9], offline_assets.SCRATCH_PHOTO_COSTUMES[-1]
    drawn = _costume(extract, people, ".gif")
    _costume(extract, vehicle, ".png")
    _costume(extract, "Animals/cat5", ".gif")  # a drawing: not in the list

    converted = offline_assets.scratch_photo_objects(cache, extract)

    assert [p.name for p in converted] == [
        f"{people.replace('/', '_')}.png",
        f"{vehicle.replace('/', '_')}.png",
    ]
    assert all(p.parent == cache / offline_assets.CONVERTED / "scratch" for p in converted)
    rgba = _read_rgba(str(converted[0]), 512)  # cropped to the opaque part, as every object
    assert rgba.shape[:2] == (40, 24)
    assert (rgba[:, :, 3] > ALPHA_OBJECT_THRESHOLD).all()
    # the GIF's palette keeps the colours close (quantised to 255)
    assert np.abs(rgba[:, :, :3].astype(int) - drawn[10:50, 8:32, :3]).mean() < 12
    full = np.asarray(Image.open(converted[0]))
    assert full.shape == (60, 40, 4) and (full[:10, :, 3] == 0).all()  # transparent border kept


def test_scratch_objects_are_written_once(tmp_path: Path) -> None:
    extract = tmp_path / "extract"
    _costume(extract, offline_assets.SCRATCH_PHOTO_COSTUMES[0], ".gif")
    first = offline_assets.scratch_photo_objects(tmp_path, extract)
    stamp = first[0].stat().st_mtime_ns
    assert offline_assets.scratch_photo_objects(tmp_path, extract) == first
    assert first[0].stat().st_mtime_ns == stamp


def test_scratch_backdrop_photos_become_backgrounds_and_its_drawings_do_not(tmp_path: Path) -> None:
    """With ``scratch_backdrops`` Scratch's photographed backdrops (cluttered scenes) join the
    backgrounds; its drawn ones (flat colour areas) and its GIFs are left out by the photo rule."""
    import cv2

    folder = tmp_path / offline_assets.SCRATCH_BACKGROUNDS / "Outdoors"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.normal(128, 60, (360, 480, 3)).astype(np.float32), (0, 0), 1.5)
    ramp = np.linspace(-40, 40, 480, dtype=np.float32)[None, :, None]
    photo = np.clip(texture + ramp, 0, 255).astype(np.uint8)
    drawing = np.zeros((360, 480, 3), np.uint8)
    drawing[:200] = (230, 180, 90)  # sky
    drawing[200:] = (60, 160, 70)  # lawn
    drawing[120:260, 150:330] = (40, 40, 200)  # a house
    assert cv2.imwrite(str(folder / "street.jpg"), photo)
    assert cv2.imwrite(str(folder / "school.jpg"), drawing)
    Image.fromarray(photo[..., ::-1]).save(folder / "stars.gif")
    (tmp_path / offline_assets.SCRATCH_BACKGROUNDS / "xy-grid.gif").write_bytes(b"GIF89a")  # not a backdrop

    assert offline_assets.background_candidates(tmp_path) == []  # off by default since cpu17
    candidates = offline_assets.background_candidates(tmp_path, scratch_backdrops=True)
    assert sorted(p.name for p in candidates) == ["school.jpg", "stars.gif", "street.jpg"]
    assert [p.name for p in candidates if offline_assets.is_background_photo(p)] == ["street.jpg"]


def _scan(folder: Path, case: str, label: np.ndarray) -> None:
    """A 3-D scan (x, y, z) with its label map, written as NRRD as pyradiomics ships its test cases."""
    import nrrd

    rng = np.random.default_rng(3)
    image = (rng.normal(100, 10, label.shape) + 400.0 * label).astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    nrrd.write(str(folder / f"{case}_image.nrrd"), image)
    nrrd.write(str(folder / f"{case}_label.nrrd"), label.astype(np.int32))


def test_lesion_slices_keep_each_finding_large_enough_in_image_orientation(tmp_path: Path) -> None:
    """A slice becomes one object when its finding has at least LESION_MIN_AREA px; rows are the scan's y
    axis, so the bright finding and the mask stay on each other."""
    label = np.zeros((48, 32, 4), np.uint8)  # x, y, z
    label[5:25, 2:12, 1] = 1  # 200 px, wide along x
    label[30:38, 20:29, 2] = 1  # 72 px: below the floor
    _scan(tmp_path, "brain9", label)
    slices = offline_assets.lesion_slices(tmp_path / "brain9_image.nrrd", tmp_path / "brain9_label.nrrd")
    assert [name for name, _, _ in slices] == ["brain9_z01"]
    _, rgb, instances = slices[0]
    assert rgb.shape == (32, 48, 3) and instances.shape == (32, 48) and instances.dtype == np.int32
    assert instances[2:12, 5:25].all() and instances.sum() == 200
    assert rgb[instances == 1].mean() > 200 > rgb[instances == 0].mean()  # the windowed finding is bright
    assert len(offline_assets.lesion_slices(tmp_path / "brain9_image.nrrd", tmp_path / "brain9_label.nrrd",
                                            min_area=50)) == 2


def test_lesion_sets_are_written_for_evaluation_when_their_scans_are_fetched(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    cache = tmp_path / "cache"
    folder = cache / "extract" / "pyradiomics"
    label = np.zeros((40, 40, 3), np.uint8)
    label[10:25, 12:30, 1] = 1
    for cases in offline_assets.LESION_SETS.values():
        for case in cases:
            _scan(folder, case, label)
    sets = offline_assets.evaluation_sets(cache)
    assert {"mr_tumour", "ct_lung"} <= set(sets)
    assert [name for name, _, _ in sets["mr_tumour"]] == ["brain1_z01", "brain2_z01"]
    offline_assets.write_eval_sets(cache, tmp_path / "eval")
    written = tmp_path / "eval" / "ct_lung"
    assert sorted(p.name for p in (written / "images").iterdir()) == ["lung1_z01.png", "lung2_z01.png"]
    assert np.asarray(Image.open(written / "images" / "lung1_z01.png")).ndim == 2  # grey, as the MR sets
    assert int(np.asarray(Image.open(written / "masks" / "lung1_z01.png")).sum()) == 15 * 18
    (folder / "brain2_label.nrrd").write_bytes(b"NRRD0004\ntype: nonsense\n\n")  # damaged in the cache
    # the downloads and the training index are not what this checks: one clear line, no traceback
    monkeypatch.setattr(offline_assets, "fetch_packages", lambda cache: cache / "extract")
    monkeypatch.setattr(offline_assets, "build_index", lambda *a: {"objects": [], "backgrounds": []})
    assert offline_assets.main(["--cache", str(cache), "--eval-out", str(tmp_path / "again")]) == 2
    assert "not a readable scan" in capsys.readouterr().err
    _scan(folder, "brain2", label)
    (folder / "lung2_label.nrrd").unlink()  # a case missing: its set is left out, the other stays
    assert "ct_lung" not in offline_assets.evaluation_sets(cache)
    assert "mr_tumour" in offline_assets.evaluation_sets(cache)


def test_lesion_cases_refuse_an_archive_that_is_not_the_pinned_one(tmp_path: Path, monkeypatch) -> None:
    import urllib.error

    packages = tmp_path / "packages"
    packages.mkdir()
    archive = packages / offline_assets.PYRADIOMICS_SDIST[0].rsplit("/", 1)[1]
    archive.write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match="SHA-256 differs"):
        offline_assets.fetch_lesion_cases(packages, tmp_path / "lesions")
    archive.unlink()

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(offline_assets.urllib.request, "urlopen", unreachable)
    assert offline_assets.fetch_lesion_cases(packages, tmp_path / "lesions") is False
    assert not (tmp_path / "lesions").exists() and not archive.exists()
