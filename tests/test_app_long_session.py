"""A long, busy annotation session in the real window (offscreen): hundreds of clicks, autosave while
the user keeps clicking, the autosave written off the GUI thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _app_helpers import open_and_wait
from PIL import Image
from test_app_window import DiskPredictor, make_window

from isegformer_app.state import autosave as autosave_module
from isegformer_app.state.autosave import read_sidecar


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    return folder


def test_six_hundred_clicks_reuse_the_canvas_items(qtbot, tmp_path, images, messages) -> None:
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, images / "a.png")
    rng = np.random.default_rng(1)
    first_dot = None
    for i in range(600):
        y, x = int(rng.integers(5, 115)), int(rng.integers(5, 155))
        window.add_click(float(y), float(x), positive=bool(i % 3))
        if first_dot is None:
            first_dot = window.canvas.dots[0]
        if i % 50 == 0:
            qtbot.wait(1)
    assert len(window.doc.clicks) == 600
    assert len(window.canvas.dots) == 600
    assert window.canvas.dots[0] is first_dot  # updated, not rebuilt on each refresh
    last = window.doc.clicks[-1]
    shown = window.canvas.dots[-1].pos()
    assert (shown.x(), shown.y()) == (last.x + 0.5, last.y + 0.5)
    window.canvas.set_clicks(window.doc.clicks[:10])  # e.g. after undo
    assert len(window.canvas.dots) == 10 and window.canvas.dots[0] is first_dot
    window.close()


def test_autosave_fires_while_the_user_keeps_clicking(
    qtbot, tmp_path, images, messages, monkeypatch
) -> None:
    writer_threads: set[int] = set()
    original = autosave_module.write_snapshot

    def recording(snapshot, path):
        writer_threads.add(threading.get_ident())
        return original(snapshot, path)

    monkeypatch.setattr("isegformer_app.state.image_sidecar.write_snapshot", recording)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    window.autosave_timer.setInterval(300)
    assert open_and_wait(window, images / "a.png")
    sidecar = window.project.sidecar_for(window.doc.path)
    started = time.monotonic()
    clicks = 0
    while time.monotonic() - started < 2.0:  # a click every 50 ms, never a pause of 300 ms
        window.add_click(20.0 + clicks % 80, 30.0 + clicks % 100, positive=True)
        clicks += 1
        qtbot.wait(50)
    assert sidecar.is_file(), "no autosave during 2 s of steady clicking"
    assert writer_threads and threading.get_ident() not in writer_threads  # written off the GUI thread
    saved = read_sidecar(sidecar)
    assert len(saved.meta["clicks"]) >= clicks // 3
    window.close()


def test_kill_9_while_clicking_loses_at_most_the_autosave_delay() -> None:
    """A real window in a child process clicks every 150 ms and is killed with SIGKILL; its autosave holds
    every click but those of the last ~1.5 s (the autosave fires during steady work, not after it)."""
    from isegformer_app.benchmarks.reliability import measure_kill
    from isegformer_app.ui.main_window import AUTOSAVE_DELAY_MS

    result = measure_kill(4.0)
    assert result["clicks in the autosave"] >= 1
    assert result["work lost (s)"] <= AUTOSAVE_DELAY_MS / 1000 + 1.0
