"""GUI latency benchmark: the real main window, offscreen, driven by real mouse events.

    QT_QPA_PLATFORM=offscreen python -m isegformer_app.benchmarks.gui [--engine NAME | --checkpoint FILE]
        [--clicks 20] [--warmup 1] [--device cpu|cuda] [--torch-threads N] [--volume-repeats 3]
        [--image-repeats 3] [--startup-repeats 3]

Start-up (``--startup-repeats``, each run a fresh interpreter, since imports are per process): the app
started as ``isegformer FOLDER`` starts it (default model) on a folder of b_good.png, c_text.png (text,
not an image) and d_good.png; D is pressed as soon as the window is painted and a click made as soon as
d_good.png is: D → d_good.png painted, window painted → first prediction painted, the longest event-loop
stall in between, and which modules of the inference stack were not yet imported when the window painted.

Per click (mouse press + release on the canvas viewport at a point of an object of the sample
image) it measures, through the app's hooks (the worker's ``prediction_ready`` results with their
``model_ms``, the window's ``prediction_shown`` signal) and event filters installed at run time:

* model latency: the predictor's own ``predict()`` time (``PredictResult.model_ms``, measured in the
  worker around ``predict()``, which is all a request does there);
* click → overlay painted: from the mouse press (the app acts on the press) and from the mouse
  release to the end of the first viewport paint after the window put the prediction into the
  canvas scene (a ``QEvent.Paint`` seen by an event filter on the viewport; no repaint is forced),
  split into press → predict() started, the model, predict() returned → overlay in the scene
  (signal delivery, the window's slot, overlay rendering) and overlay in the scene → painted;
* event-loop stall: the longest gap between ticks of a 5 ms precise ``QTimer`` in the GUI thread,
  over the whole click (press → painted) and over the time ``predict()`` runs.

It times opening a 4096×4096 photo (``open_path`` → image painted, decoding in the background) with
the longest GUI stall meanwhile, against the stall a synchronous open would cause (``load_image`` on
the GUI thread, the straightforward implementation), and opening a 160-slice 384×384 DICOM series (the
synthetic series of
:mod:`isegformer_app.benchmarks.volume_open`): ``load_dicom`` alone, and through the window
(``open_path`` → first slice painted, loading in the background) with the longest GUI stall meanwhile.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QRegion
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow
    from isegformer_app.ui.worker import PredictResult

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "resources" / "samples" / "sample.jpg"
PROBE_INTERVAL_MS = 5
IDLE_BETWEEN_CLICKS_MS = 60
OVERHEAD_TARGET_MS = 30.0  # click -> overlay <= model latency + this
STALL_TARGET_MS = 50.0
VOLUME_TARGET_S = 3.0
STARTUP_D_TARGET_MS = 300.0  # D answers within this at any time after the window shows

# Click plan on resources/samples/sample.jpg (500×375): per object, (y, x, positive) in image pixels.
OBJECT_CLICKS: tuple[tuple[tuple[int, int, bool], ...], ...] = (
    ((190, 250, True), (110, 255, True), (235, 300, False)),  # man with the hat (shirt, face, tray)
    ((170, 440, True), (90, 440, True), (245, 435, False)),  # man on the right (shirt, face, bowl)
    ((70, 330, True), (45, 335, True), (130, 330, False)),  # woman in red (jacket, hood, chair)
    ((290, 235, True), (262, 240, True), (330, 262, False)),  # water bottle (body, cap, table)
    ((245, 435, True), (250, 470, True), (228, 400, False)),  # bowl on the right tray
    ((310, 140, True), (300, 112, True), (335, 100, False)),  # plate on the left tray
    ((260, 40, True), (200, 30, True), (255, 130, False)),  # person at the bottom left
)


@dataclass
class ClickTiming:
    """Milliseconds measured for one click."""

    model_ms: float  # the predictor's predict() call
    press_to_paint_ms: float  # mouse press -> overlay painted
    release_to_paint_ms: float  # mouse release -> overlay painted
    press_to_predict_ms: float  # mouse press -> predict() started (GUI handling, queue, worker)
    handoff_ms: float  # predict() returned -> prediction put into the canvas scene (GUI thread)
    shown_to_paint_ms: float  # prediction put into the canvas scene (GUI thread) -> overlay painted
    stall_click_ms: float  # longest GUI event-loop gap, press -> painted
    stall_predict_ms: float  # longest GUI event-loop gap while predict() runs
    paint_covers_click: bool  # the timed paint's region contains the clicked point

    @property
    def overhead_ms(self) -> float:
        """Click (press) -> overlay minus the model latency: what the app adds."""
        return self.press_to_paint_ms - self.model_ms


class PredictionLog(QObject):
    """Records the inference worker's results and the image keys its predictor took (GUI thread).

    Uses the app's hooks: ``InferenceWorker.prediction_ready`` (a ``PredictResult`` with ``model_ms``,
    the pure ``predict()`` time, and ``predict_started``) and ``InferenceWorker.image_ready``.
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        # request id -> (predict() start, model ms); not the results, whose maps would pile up in memory
        self.spans: dict[int, tuple[float, float]] = {}
        self.images_ready: list[str] = []
        window.worker.prediction_ready.connect(self._on_result)
        window.worker.image_ready.connect(self._on_image)

    @Slot(object)
    def _on_result(self, result: PredictResult) -> None:
        self.spans[result.request.request_id] = (result.predict_started, result.model_ms)

    @Slot(str)
    def _on_image(self, key: str) -> None:
        self.images_ready.append(key)

    def predict_span(self, request_id: int) -> tuple[float, float] | None:
        """(start, end) ``perf_counter`` seconds of the ``predict()`` of ``request_id``; None if unknown."""
        span = self.spans.get(request_id)
        if span is None:
            return None
        started, model_ms = span
        return started, started + model_ms / 1000.0


class TickProbe(QObject):
    """A precise ``interval_ms`` timer in the GUI thread; gaps between its ticks are event-loop stalls."""

    def __init__(self, interval_ms: int = PROBE_INTERVAL_MS) -> None:
        super().__init__()
        self.ticks: list[float] = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    @Slot()
    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def max_gap_ms(self, start: float, end: float) -> float:
        """Longest gap between consecutive ticks that overlaps ``[start, end]``; NaN if none does."""
        t = np.asarray(self.ticks)
        if len(t) < 2:
            return float("nan")
        gaps = np.diff(t)
        overlap = (t[1:] > start) & (t[:-1] < end)
        return float(gaps[overlap].max() * 1000) if overlap.any() else float("nan")


class OverlayPaintProbe(QObject):
    """Times the first viewport paint after a prediction was put into the scene.

    The window's ``prediction_shown(request_id)`` signal (emitted once the overlay is in the canvas
    scene) notes when the prediction of the expected request (or a later one) arrives. The scene
    repaints its views later (deferred), so an event filter on the viewport then waits for the next
    ``QEvent.Paint``; a zero timer posted from there fires once that paint (and the flush that
    follows it) has finished: that moment is "overlay painted".
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window = window
        self.first_request_id = 0
        self.shown_at: float | None = None
        self.painted_at: float | None = None
        self.on_painted: Callable[[], None] | None = None
        self._armed = False
        self.painted_region = QRegion()  # viewport region of the timed paint
        window.canvas.viewport().installEventFilter(self)
        window.prediction_shown.connect(self._on_shown)

    def expect(self, first_request_id: int, on_painted: Callable[[], None]) -> None:
        """Wait for the prediction of request ``first_request_id`` or later; call ``on_painted()`` after."""
        self.first_request_id, self.on_painted = first_request_id, on_painted
        self.shown_at = self.painted_at = None
        self.painted_region = QRegion()
        self._armed = False

    def close(self) -> None:
        self.window.prediction_shown.disconnect(self._on_shown)
        self.window.canvas.viewport().removeEventFilter(self)

    @Slot(int)
    def _on_shown(self, request_id: int) -> None:
        if self.shown_at is None and request_id >= self.first_request_id:
            self.shown_at = time.perf_counter()
            self._armed = True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if self._armed and event.type() == QEvent.Type.Paint:
            self._armed = False
            self.painted_region = QRegion(event.region())
            QTimer.singleShot(0, self._painted)
        return False

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()
        if self.on_painted is not None:
            self.on_painted()


def wait_ms(ms: int) -> None:
    """Run the Qt event loop for ``ms`` milliseconds (no busy waiting)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the event loop until ``condition()``; RuntimeError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        wait_ms(20)


def click_plan(count: int) -> list[tuple[int, int, bool, bool]]:
    """``count`` clicks (y, x, positive, last_of_object) cycling through :data:`OBJECT_CLICKS`."""
    plan = []
    while len(plan) < count:
        for obj in OBJECT_CLICKS:
            plan += [(y, x, pos, i == len(obj) - 1) for i, (y, x, pos) in enumerate(obj)]
    return plan[:count]


def measure_clicks(window: MainWindow, log: PredictionLog, clicks: int, warmup: int = 1,
                   timeout_s: float = 120.0) -> list[ClickTiming]:  # fmt: skip
    """Click ``warmup + clicks`` times on the open image; timings of the last ``clicks`` clicks.

    ``window`` is a shown MainWindow with an image open; ``log`` records its worker's results.
    After the last click of each object (see :data:`OBJECT_CLICKS`) Space finishes it.
    """
    viewport = window.canvas.viewport()
    paint = OverlayPaintProbe(window)
    probe = TickProbe()
    probe.start()
    timings: list[ClickTiming] = []
    try:
        for n, (y, x, positive, last) in enumerate(click_plan(warmup + clicks)):
            loop = QEventLoop()
            request_id = window.worker.latest_request_id() + 1  # the request this click will send
            paint.expect(request_id, loop.quit)
            timeout = QTimer(singleShot=True, interval=int(timeout_s * 1000))
            timeout.timeout.connect(loop.quit)
            pos = window.canvas.image_to_view(y, x)
            button = Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton
            pressed = time.perf_counter()
            QTest.mousePress(viewport, button, Qt.KeyboardModifier.NoModifier, pos)
            released = time.perf_counter()
            QTest.mouseRelease(viewport, button, Qt.KeyboardModifier.NoModifier, pos)
            if paint.painted_at is None:
                timeout.start()
                loop.exec()
                timeout.stop()
            if paint.painted_at is None:
                raise RuntimeError(
                    f"click {n + 1} at (y={y}, x={x}): no overlay painted in {timeout_s:.0f} s"
                )
            if window.worker.latest_request_id() < request_id:
                raise RuntimeError(f"click {n + 1}: the window sent no prediction request")
            wait_ms(IDLE_BETWEEN_CLICKS_MS)  # let the probe tick past the paint
            call = log.predict_span(window.worker.latest_request_id())
            if call is None:
                raise RuntimeError(f"click {n + 1}: no prediction result for the click's request")
            if n >= warmup:
                timings.append(ClickTiming(
                    model_ms=(call[1] - call[0]) * 1000,
                    press_to_paint_ms=(paint.painted_at - pressed) * 1000,
                    release_to_paint_ms=(paint.painted_at - released) * 1000,
                    press_to_predict_ms=(call[0] - pressed) * 1000,
                    handoff_ms=(paint.shown_at - call[1]) * 1000,
                    shown_to_paint_ms=(paint.painted_at - paint.shown_at) * 1000,
                    stall_click_ms=probe.max_gap_ms(pressed, paint.painted_at),
                    stall_predict_ms=probe.max_gap_ms(*call),
                    paint_covers_click=paint.painted_region.contains(pos),
                ))  # fmt: skip
            if last:
                QTest.keyClick(window.canvas, Qt.Key.Key_Space)  # finish the object
                if window.doc.clicks:  # nothing to finish (empty mask): start over
                    QTest.keyClick(window.canvas, Qt.Key.Key_Escape)
                wait_ms(IDLE_BETWEEN_CLICKS_MS)
    finally:
        probe.stop()
        paint.close()
    return timings


@dataclass
class VolumeOpenTiming:
    """Opening a series through the window: ``open_path`` → first slice painted, and GUI stalls meanwhile."""

    seconds: float
    stall_ms: float  # longest GUI event-loop gap during the open


class FirstVolumePaint(QObject):
    """Calls ``on_painted`` after the first viewport paint once the window is in volume mode."""

    def __init__(self, window: MainWindow, on_painted: Callable[[], None]) -> None:
        super().__init__()
        self.window, self.on_painted = window, on_painted
        self.painted_at: float | None = None
        self._seen = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if not self._seen and event.type() == QEvent.Type.Paint and self.window.volume.active:
            self._seen = True  # the slice was put on the canvas synchronously when the volume was installed
            QTimer.singleShot(0, self._painted)
        return False

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()
        self.on_painted()


@dataclass
class ImageOpenTiming:
    """Opening a large photo through the window, and the same decode done the straightforward way."""

    seconds: float  # open_path -> image shown and painted
    stall_ms: float  # longest GUI event-loop gap meanwhile
    synchronous_ms: float  # load_image() on the calling thread: the stall of a synchronous open


def write_large_photo(path: Path, side: int = 4096) -> Path:
    """A ``side``×``side`` JPEG with texture (smooth gradients plus noise: it decodes like a photo)."""
    from PIL import Image

    yy, xx = np.mgrid[:side, :side].astype(np.float32) / side
    rng = np.random.default_rng(0)
    rgb = np.stack([yy * 200, xx * 200, (yy + xx) * 100], axis=-1) + rng.normal(0, 12, (side, side, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def measure_image_open(window: MainWindow, path: Path, timeout_s: float = 120.0) -> ImageOpenTiming:
    """``window.open_path(path)`` until the image is shown and a paint has followed; the GUI stall
    meanwhile; then ``load_image`` alone on this thread for comparison."""
    from isegformer_app.state.imageio import load_image

    probe = TickProbe()
    probe.start()
    try:
        started = time.perf_counter()
        if not window.open_path(path):
            raise RuntimeError(f"the app refused to open {path}")
        wait_until(lambda: window.images.loading is None and window.doc is not None
                   and window.doc.path == path, timeout_s, f"{path.name} to be shown")  # fmt: skip
        window.canvas.viewport().repaint()  # the paint that puts the new image on screen
        shown = time.perf_counter()
        wait_ms(IDLE_BETWEEN_CLICKS_MS)  # let the probe tick past the paint
        stall = probe.max_gap_ms(started, shown)
    finally:
        probe.stop()
    synchronous = time.perf_counter()
    load_image(path, window.images.project.max_side)
    return ImageOpenTiming(shown - started, stall, (time.perf_counter() - synchronous) * 1000)


def write_benchmark_series(folder: Path, slices: int = 160, size: int = 384) -> Path:
    """The synthetic CT series of :mod:`isegformer_app.benchmarks.volume_open`, written into ``folder``."""
    from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
    from isegformer_app.benchmarks.volume_open import phantom

    affine = np.diag([-0.7, -0.7, 1.5, 1.0])
    affine[:3, 3] = (120.0, 130.0, -80.0)
    folder.mkdir(parents=True, exist_ok=True)
    write_dicom_series(phantom(size, slices), affine, folder, SeriesOptions(modality="CT", intercept=-1024.0))
    return folder


def measure_volume_open(window: MainWindow, folder: Path, timeout_s: float = 120.0) -> VolumeOpenTiming:
    """Open ``folder`` (a DICOM series) with ``window.open_path``; wait until its first slice is painted."""
    loop = QEventLoop()
    paint = FirstVolumePaint(window, loop.quit)
    probe = TickProbe()
    viewport = window.canvas.viewport()
    viewport.installEventFilter(paint)
    probe.start()
    try:
        window.volume.close_volume()
        started = time.perf_counter()
        if not window.open_path(folder):
            raise RuntimeError(f"the app refused to open {folder}")
        if paint.painted_at is None:
            QTimer.singleShot(int(timeout_s * 1000), loop.quit)
            loop.exec()
        if paint.painted_at is None:
            raise RuntimeError(f"no volume slice painted within {timeout_s:.0f} s of opening {folder}")
        wait_ms(IDLE_BETWEEN_CLICKS_MS)  # let the probe tick past the paint
        return VolumeOpenTiming(paint.painted_at - started, probe.max_gap_ms(started, paint.painted_at))
    finally:
        probe.stop()
        viewport.removeEventFilter(paint)


@dataclass
class StartupTiming:
    """The issue's start-up scenario in a fresh interpreter (imports are per process): the app as
    ``isegformer FOLDER`` starts it (default model), D pressed as soon as the window is painted."""

    shown_s: float  # QApplication created -> window painted (the window is built and shown first)
    d_ms: float  # D pressed (at once after the paint) -> d_good.png painted (skipping c_text.png)
    prediction_ms: float  # window painted -> first prediction painted (click as soon as d_good.png is shown)
    stall_ms: float  # longest GUI event-loop gap from the window's paint to the first prediction painted
    model_ready_ms: float  # window painted -> the worker announced the default model ready
    imported_after_shown: list[str]  # modules of the inference stack not yet imported when the window painted


STARTUP_IMAGES = ("b_good.png", "c_text.png", "d_good.png")
STARTUP_WATCHED = ("torch", "timm", "model.build", "model.checkpoint", "model.predictor", "model.engines",
                   "PIL.TiffImagePlugin")  # fmt: skip


def write_startup_folder(folder: Path) -> Path:
    """The issue's folder: two 400×300 photos with a red disk, and a text file named like a PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:300, :400]
    rgb = np.full((300, 400, 3), 120, np.uint8)
    rgb[(yy - 150) ** 2 + (xx - 200) ** 2 <= 60**2] = (220, 40, 30)
    for name in STARTUP_IMAGES[::2]:
        Image.fromarray(rgb).save(folder / name)
    (folder / STARTUP_IMAGES[1]).write_text("not an image\n" * 10)
    return folder


class _FirstPaint(QObject):
    """Notes the end of the first paint of ``widget`` for which ``ready()`` holds."""

    def __init__(self, widget, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready, self.painted_at = ready, None
        self._seen = False
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if not self._seen and event.type() == QEvent.Type.Paint and self.ready():
            self._seen = True
            QTimer.singleShot(0, self._painted)
        return False

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()


def startup_child(work_dir: Path, timeout_s: float = 300.0) -> StartupTiming:
    """Run the start-up scenario in this (fresh) interpreter: what ``isegformer FOLDER`` does
    (``isegformer_app.main``: window built, shown, folder opened), then D at once, then a click on
    d_good.png as soon as it is painted."""
    started = time.perf_counter()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    _report_messages_instead_of_dialogs()
    from isegformer_app.main import build_window

    folder = write_startup_folder(work_dir / "images")
    probe = TickProbe()
    window = build_window(app, config_dir=work_dir / "config", sidecar_dir=work_dir / "autosave")
    ready: list[float] = []
    window.worker.engine_ready.connect(lambda *_: ready.append(time.perf_counter()))
    missing: list[str] = []

    def note_missing_imports() -> bool:
        missing.extend(name for name in STARTUP_WATCHED if name not in sys.modules)
        return True

    shown = _FirstPaint(window, note_missing_imports)
    on_d = _FirstPaint(window.canvas.viewport(),
                       lambda: window.doc is not None and window.doc.path.name == STARTUP_IMAGES[2])
    window.show()
    window.open_path(folder)
    probe.start()
    wait_until(lambda: shown.painted_at is not None, timeout_s, "the window's first paint")
    pressed = time.perf_counter()
    QTest.keyClick(window, Qt.Key.Key_D)
    wait_until(lambda: on_d.painted_at is not None, timeout_s, "d_good.png to be painted")
    paint = OverlayPaintProbe(window)
    paint.expect(window.worker.latest_request_id() + 1, lambda: None)
    pos = window.canvas.image_to_view(150, 200)
    QTest.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     pos)  # fmt: skip
    wait_until(lambda: paint.painted_at is not None, timeout_s, "the first prediction to be painted")
    wait_ms(IDLE_BETWEEN_CLICKS_MS)
    probe.stop()
    timing = StartupTiming(
        shown_s=shown.painted_at - started, d_ms=(on_d.painted_at - pressed) * 1000,
        prediction_ms=(paint.painted_at - shown.painted_at) * 1000,
        stall_ms=probe.max_gap_ms(shown.painted_at, paint.painted_at),
        model_ready_ms=(ready[0] - shown.painted_at) * 1000 if ready else float("nan"),
        imported_after_shown=missing,
    )  # fmt: skip
    paint.close()
    close_window(window)
    return timing


def measure_startup(timeout_s: float = 300.0) -> StartupTiming:
    """:func:`startup_child` in a fresh interpreter (``--startup-child``), offscreen."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="isegformer-startup-") as folder:
        command = [sys.executable, "-m", "isegformer_app.benchmarks.gui", "--startup-child", folder]
        run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    if run.returncode != 0:
        raise RuntimeError(f"the start-up run failed:\n{run.stderr[-3000:]}")
    return StartupTiming(**json.loads(run.stdout.strip().splitlines()[-1]))


def open_window(image: Path, work_dir: Path, engine: str | None = None, checkpoint: Path | None = None,
                device: str = "cpu", engines: dict | None = None, timeout_s: float = 300.0,
                torch_threads: int = 0) -> tuple[MainWindow, PredictionLog]:  # fmt: skip
    """Show a MainWindow (settings and autosaves under ``work_dir``), load the model, open ``image``.

    Returns ``(window, PredictionLog)``. ``engines`` replaces the built-in engines (tests).
    """
    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow

    settings = Settings.load(work_dir / "config")
    settings.device = device
    settings.inference_threads = torch_threads
    if engine:
        settings.engine = engine
    window = MainWindow(settings, engines=engines, sidecar_dir=work_dir / "autosave")
    window.show()
    wait_until(lambda: window.models.active[0] == "engine", timeout_s, "the built-in engine to load")
    if checkpoint is not None:
        window.models.load_checkpoint(checkpoint)
        wait_until(lambda: window.models.active == ("checkpoint", str(checkpoint)), timeout_s,
                   f"checkpoint {checkpoint}")  # fmt: skip
    log = PredictionLog(window)
    if not window.open_path(image):
        raise RuntimeError(f"the app could not open {image}")
    wait_until(lambda: window.image_key in log.images_ready, timeout_s, "the model to take the image")
    return window, log


def close_window(window: MainWindow) -> None:
    """Close without the unsaved-work prompt (the autosave folder is temporary)."""
    window.save_now()
    window.close()


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), float(np.percentile(values, 90)), max(values)


def format_table(timings: Sequence[ClickTiming], volume_s: Sequence[float], header: str, source: str,
                 window_opens: Sequence[VolumeOpenTiming] = (),
                 image_opens: Sequence[ImageOpenTiming] = (),
                 startups: Sequence[StartupTiming] = ()) -> str:  # fmt: skip
    """Markdown tables: median / p90 / max of each per-click number with the targets, then the start-up
    runs, the photo and the volume opens (``volume_s``: ``load_dicom`` seconds; ``window_opens``: through
    the window)."""
    lines = [
        header,
        f"# model: {source}; {len(timings)} clicks; stall probe: {PROBE_INTERVAL_MS} ms timer; "
        f"timed paint covered the clicked point: {sum(t.paint_covers_click for t in timings)}/{len(timings)}",
        "",
        "| per click (ms) | median | p90 | max | target | max meets target |",
        "|---|---:|---:|---:|---|---|",
    ]
    rows = (
        ("model latency: predict()", [t.model_ms for t in timings], "", None),
        ("mouse press → overlay painted", [t.press_to_paint_ms for t in timings], "", None),
        ("mouse release → overlay painted", [t.release_to_paint_ms for t in timings], "", None),
        ("press → painted minus model latency", [t.overhead_ms for t in timings],
         f"≤ {OVERHEAD_TARGET_MS:.0f}", OVERHEAD_TARGET_MS),
        ("mouse press → predict() started", [t.press_to_predict_ms for t in timings], "", None),
        ("predict() returned → overlay set in the scene", [t.handoff_ms for t in timings], "", None),
        ("overlay set in the scene → painted", [t.shown_to_paint_ms for t in timings], "", None),
        ("event-loop stall, press → painted", [t.stall_click_ms for t in timings],
         f"≤ {STALL_TARGET_MS:.0f}", STALL_TARGET_MS),
        ("event-loop stall while predict() runs", [t.stall_predict_ms for t in timings],
         f"≤ {STALL_TARGET_MS:.0f}", STALL_TARGET_MS),
    )  # fmt: skip
    for name, values, target, limit in rows:
        median, slow, worst = _stats(values)
        verdict = "" if limit is None else ("yes" if worst <= limit else "no")
        lines.append(f"| {name} | {median:.1f} | {slow:.1f} | {worst:.1f} | {target} | {verdict} |")
    if startups:
        lines += ["", "| start-up, fresh process, default model (folder b_good, c_text, d_good) | runs "
                  "| worst | target | worst meets target |", "|---|---|---:|---|---|"]  # fmt: skip
        for name, values, limit in (
            ("QApplication → window painted (ms)", [1000 * t.shown_s for t in startups], None),
            ("D at once after the paint → d_good.png painted (ms)", [t.d_ms for t in startups],
             STARTUP_D_TARGET_MS),
            ("window painted → model ready (ms)", [t.model_ready_ms for t in startups], None),
            ("window painted → first prediction painted (ms)", [t.prediction_ms for t in startups], None),
            ("longest event-loop stall, painted → first prediction (ms)", [t.stall_ms for t in startups],
             STALL_TARGET_MS),
        ):  # fmt: skip
            runs = ", ".join(f"{v:.0f}" for v in values)
            target = "" if limit is None else f"≤ {limit:.0f} ms"
            verdict = "" if limit is None else ("yes" if max(values) <= limit else "no")
            lines.append(f"| {name} | {runs} | {max(values):.0f} | {target} | {verdict} |")
    if image_opens:
        lines += ["", "| 4096×4096 JPEG | runs | best | target | best meets target |",
                  "|---|---|---:|---|---|"]  # fmt: skip
        for name, values, fmt in (
            ("window: open_path → image painted (s)", [o.seconds for o in image_opens], "{:.2f}"),
            ("window: longest event-loop stall while opening (ms)", [o.stall_ms for o in image_opens],
             "{:.0f}"),
            ("straightforward: load_image on the GUI thread = its stall (ms)",
             [o.synchronous_ms for o in image_opens], "{:.0f}"),
        ):  # fmt: skip
            runs = ", ".join(fmt.format(v) for v in values)
            is_stall = "stall" in name and "straightforward" not in name
            target = f"≤ {STALL_TARGET_MS:.0f} ms" if is_stall else ""
            verdict = ("yes" if max(values) <= STALL_TARGET_MS else "no (worst run)") if is_stall else ""
            lines.append(f"| {name} | {runs} | {fmt.format(min(values))} | {target} | {verdict} |")
    if volume_s or window_opens:
        lines += ["", "| 160-slice 384×384 DICOM series | runs | best | target | best meets target |",
                  "|---|---|---:|---|---|"]  # fmt: skip
    if volume_s:
        best = min(volume_s)
        runs = ", ".join(f"{v:.2f}" for v in volume_s)
        verdict = "yes" if best <= VOLUME_TARGET_S else "no"
        lines.append(f"| load_dicom (s) | {runs} | {best:.2f} | ≤ {VOLUME_TARGET_S:.0f} s | {verdict} |")
    if window_opens:
        seconds = [o.seconds for o in window_opens]
        runs = ", ".join(f"{v:.2f}" for v in seconds)
        verdict = "yes" if min(seconds) <= VOLUME_TARGET_S else "no"
        lines.append(f"| window: open_path → first slice painted (s) | {runs} | {min(seconds):.2f} "
                     f"| ≤ {VOLUME_TARGET_S:.0f} s | {verdict} |")  # fmt: skip
        stalls = [o.stall_ms for o in window_opens]
        runs = ", ".join(f"{v:.0f}" for v in stalls)
        verdict = "yes" if max(stalls) <= STALL_TARGET_MS else "no (worst run)"
        lines.append(f"| window: longest event-loop stall while opening (ms) | {runs} | {min(stalls):.0f} "
                     f"| ≤ {STALL_TARGET_MS:.0f} ms | {verdict} |")  # fmt: skip
    return "\n".join(lines)


def _report_messages_instead_of_dialogs() -> None:
    """A modal box would block the offscreen run: print warnings and go on; discard unsaved work."""

    def warn(_parent, title, text, *_args, **_kwargs):
        print(f"[{title}] {text}", file=sys.stderr)
        return QMessageBox.StandardButton.Ok

    QMessageBox.warning = warn
    QMessageBox.question = lambda *_args, **_kwargs: QMessageBox.StandardButton.Discard


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--engine", help="built-in engine (default: model.engines.DEFAULT_ENGINE)")
    source.add_argument("--checkpoint", type=Path, help="original-format checkpoint to load instead")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of a checkpoint")
    parser.add_argument("--clicks", type=int, default=20, help="timed clicks")
    parser.add_argument("--warmup", type=int, default=1, help="untimed clicks first")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch intra-op threads of the inference worker (0: the app's automatic choice)")
    parser.add_argument("--volume-repeats", type=int, default=3, help="DICOM open repeats (0: skip)")
    parser.add_argument("--image-repeats", type=int, default=3, help="4096² photo open repeats (0: skip)")
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="start-up runs, each a fresh interpreter with the default model (0: skip)")
    parser.add_argument("--startup-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.startup_child is not None:  # before anything imports torch: imports are what it measures
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(startup_child(args.startup_child))))
        return 0
    if args.clicks < 1 or args.warmup < 0:
        parser.error("--clicks must be >= 1 and --warmup >= 0")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"no checkpoint file {args.checkpoint}")

    startups = [measure_startup() for _ in range(args.startup_repeats)]
    import torch

    from model.benchmarks.latency import machine_header
    from model.engines import DEFAULT_ENGINE, ENGINE_NAMES

    engine = args.engine or DEFAULT_ENGINE
    if engine not in ENGINE_NAMES:
        parser.error(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    _report_messages_instead_of_dialogs()
    window_opens: list[VolumeOpenTiming] = []
    image_opens: list[ImageOpenTiming] = []
    with tempfile.TemporaryDirectory(prefix="isegformer-bench-") as folder:
        work_dir = Path(folder)
        image = work_dir / SAMPLE_IMAGE.name  # a copy: autosaves never land in resources/
        shutil.copy(SAMPLE_IMAGE, image)
        window, log = open_window(image, work_dir, engine, args.checkpoint, args.device,
                                  torch_threads=args.torch_threads)  # fmt: skip
        worker_threads = window.worker.torch_threads
        try:
            timings = measure_clicks(window, log, args.clicks, args.warmup)
            if args.image_repeats > 0:
                big = write_large_photo(work_dir / "large.jpg")
                for _ in range(args.image_repeats):
                    image_opens.append(measure_image_open(window, big))
                    window.open_path(image)  # back to the sample: the next run opens the large one anew
                    wait_until(lambda: window.images.loading is None, 60, "the sample to be shown again")
            if args.volume_repeats > 0:
                series = write_benchmark_series(work_dir / "series")
                window_opens = [measure_volume_open(window, series) for _ in range(args.volume_repeats)]
        finally:
            close_window(window)
    app.processEvents()
    volume_s: list[float] = []
    if args.volume_repeats > 0:
        from isegformer_app.benchmarks.volume_open import run as time_volume_open

        volume_s = time_volume_open(slices=160, size=384, repeats=args.volume_repeats)
    device = torch.device(args.device if args.checkpoint is not None else "cpu")
    name = f"checkpoint {args.checkpoint.name} on {device}" if args.checkpoint else f"engine {engine}"
    header = f"{machine_header(device)}; inference worker torch threads {worker_threads}"
    print(format_table(timings, volume_s, header, name, window_opens, image_opens, startups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
