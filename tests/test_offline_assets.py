"""training.data.offline_assets: object sources decoded into the asset cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
