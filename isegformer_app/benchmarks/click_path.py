"""Follow one click from the mouse to the autosave on disk: the project files it passes through and
its back-turns (a callee calling back into a file that called it).

    QT_QPA_PLATFORM=offscreen python -m isegformer_app.benchmarks.click_path

The real main window (offscreen) opens the sample image with a fake engine (a disk at each positive
click, no model), then a profiler (``sys.setprofile`` in the GUI thread, the inference thread and the
autosave thread) records every Python call from the mouse press on the canvas until the autosave that
click caused is written. Counted:

* files: the project's source files (``isegformer_app/``, ``model/``) with at least one call;
* back-turns: calls into a file that is already on the calling thread's stack below the caller (A calls
  B, B calls back into A), each (caller file, callee function) once, also counted by pair of files (a
  base class and its subclass, ``state/annotation.py`` and ``state/document.py``, count as one file);
  those into ``ui/`` files are the window ↔ mode round trips; the others are mostly callbacks handed
  down (an atomic write's encoder, a task's completion) and commands reading their document.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.prediction import Prediction, PredictionState

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGE = ROOT / "resources" / "samples" / "sample.jpg"
PACKAGES = ("isegformer_app", "model")
SELF = Path(__file__).resolve()
# one object split over files by inheritance: a base class calling its subclass is no turn back
SAME_OBJECT = {"isegformer_app/state/annotation.py": "isegformer_app/state/document.py"}


class DiskEngine:
    """A disk of radius 20 at each positive click (probability 0.9): no model, no torch."""

    name = "disks"

    def __init__(self) -> None:
        self.shape = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        self.shape = image.shape[:2]

    def predict(self, clicks, state: PredictionState | None = None) -> Prediction:
        del state  # the disks depend on the clicks alone
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        prob = np.zeros(self.shape, np.float32)
        for c in clicks:
            prob[(yy - c.y) ** 2 + (xx - c.x) ** 2 <= 400] = 0.9 if c.is_positive else 0.05
        return Prediction.of(prob)


def _project_file(filename: str) -> str | None:
    """``ui/main_window.py``-style name of a project source file; None for anything else."""
    try:
        path = Path(filename).resolve()
        rel = path.relative_to(ROOT)
    except (ValueError, OSError):
        return None
    if path == SELF or rel.parts[0] not in PACKAGES or "benchmarks" in rel.parts:
        return None
    return str(rel)


def _unit(name: str | None) -> str | None:
    return SAME_OBJECT.get(name, name) if name is not None else None


@dataclass
class ClickPath:
    """What the profiler saw: files in first-call order, back-turns as "caller -> callee file:function"."""

    files: list[str] = field(default_factory=list)
    back_turns: list[str] = field(default_factory=list)
    recording: bool = False

    def ui_turns(self) -> list[str]:
        """The back-turns into a ``ui/`` file (the window, a mode, the canvas...)."""
        return [t for t in self.back_turns if t.split(" -> ")[1].startswith("isegformer_app/ui/")]

    def turn_pairs(self) -> list[str]:
        """The back-turns by (caller file, callee file), each pair once."""
        return list(dict.fromkeys(t.split(":")[0] for t in self.back_turns))

    def profile(self, frame, event: str, _arg) -> None:
        if not self.recording or event != "call":
            return
        callee = _project_file(frame.f_code.co_filename)
        if callee is None:
            return
        if callee not in self.files:
            self.files.append(callee)
        caller_frame = frame.f_back
        caller = _project_file(caller_frame.f_code.co_filename) if caller_frame is not None else None
        if caller is None or _unit(caller) == _unit(callee):
            return
        below = caller_frame.f_back
        while below is not None:
            if _unit(_project_file(below.f_code.co_filename)) == _unit(callee):
                turn = f"{caller} -> {callee}:{frame.f_code.co_name}"
                if turn not in self.back_turns:
                    self.back_turns.append(turn)
                return
            below = below.f_back


def _profiled(run, path: ClickPath):
    def wrapper(self, *args, **kwargs):
        sys.setprofile(path.profile)
        try:
            return run(self, *args, **kwargs)
        finally:
            sys.setprofile(None)

    return wrapper


def follow_one_click(work_dir: Path, timeout_s: float = 30.0) -> ClickPath:
    """Open the sample image, click once on the canvas and record the path until the autosave is written."""
    from PySide6.QtCore import QCoreApplication, QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from isegformer_app.settings import Settings
    from isegformer_app.ui import tasks, worker
    from isegformer_app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    path = ClickPath()
    tasks.BackgroundTask.run = _profiled(tasks.BackgroundTask.run, path)
    worker.InferenceWorker.run = _profiled(worker.InferenceWorker.run, path)
    image = work_dir / "sample.jpg"
    shutil.copy(SAMPLE_IMAGE, image)
    window = MainWindow(Settings.load(work_dir / "config"), engines={"disks": DiskEngine})
    window.show()

    def wait(condition, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
            app.processEvents()
            time.sleep(0.005)

    wait(lambda: window.models.active == ("engine", "disks"), "the engine")
    window.open_path(image)
    wait(lambda: window.doc is not None and window.images.loading is None, "the image")
    wait(lambda: window.worker.image_key == window.image_key, "the worker to take the image")
    for _ in range(20):
        app.processEvents()
    sidecar = window.project.sidecar_for(image)
    pos = window.canvas.image_to_view(190, 250)
    sys.setprofile(path.profile)
    path.recording = True
    try:
        QTest.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(pos))  # fmt: skip
        QTest.mouseRelease(window.canvas.viewport(), Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier, QPoint(pos))  # fmt: skip
        wait(lambda: sidecar.is_file() and not window.doc.dirty, "the autosave")
    finally:
        path.recording = False
        sys.setprofile(None)
    QCoreApplication.processEvents()
    window.close()
    return path


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = follow_one_click(Path(tmp))
    print(f"One click, mouse press -> autosave written: {len(path.files)} project files, "
          f"{len(path.back_turns)} back-turns ({len(path.ui_turns())} into ui/), "
          f"{len(path.turn_pairs())} pairs of files")  # fmt: skip
    print("\nfiles (first call order):")
    for name in path.files:
        print(f"  {name}")
    print("\nback-turns (caller -> callee file:function):")
    for turn in path.back_turns:
        print(f"  {turn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
