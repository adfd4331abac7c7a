"""Files whose content is not what their name says reach only decoders that run no program."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from isegformer_app.state.imageio import ImageLoadError, load_image, read_png
from model.untrusted import open_image

POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke showpage\n"


@pytest.fixture
def ghostscript_calls(monkeypatch) -> list[str]:
    """Every attempt to render PostScript (Pillow hands EPS to Ghostscript, when installed, on load)."""
    calls: list[str] = []

    def record(*args, **kwargs):
        calls.append("Ghostscript")
        raise OSError("Ghostscript would have run here")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", record)
    return calls


def test_postscript_named_png_is_refused_before_any_decoder_runs(tmp_path: Path, ghostscript_calls) -> None:
    path = tmp_path / "holiday.png"
    path.write_bytes(POSTSCRIPT)
    with Image.open(path) as img:  # Pillow alone picks its EPS reader by content, whatever the name
        assert img.format == "EPS"
    with pytest.raises(ImageLoadError, match="format this app does not read"):
        load_image(path)
    with pytest.raises(OSError):
        read_png(path)
    assert ghostscript_calls == []


def test_the_formats_the_app_lists_still_open(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg", ".bmp", ".tif", ".webp", ".gif"):
        path = tmp_path / f"photo{suffix}"
        Image.fromarray(rgb).save(path)
        assert load_image(path).rgb.shape == (24, 32, 3), suffix
    camera = tmp_path / "camera.jpg"  # a multi-picture JPEG, as many cameras write: Pillow's MPO reader
    Image.fromarray(rgb).save(camera, format="MPO", save_all=True, append_images=[Image.fromarray(rgb[::-1])])
    with open_image(camera) as img:
        assert img.format == "MPO"
    loaded = load_image(camera)
    assert loaded.rgb.shape == (24, 32, 3) and any("2 frames" in n for n in loaded.notices)
