"""Reliability figures of the real window (offscreen): work lost to ``kill -9``, memory of long sessions.

    QT_QPA_PLATFORM=offscreen python -m isegformer_app.benchmarks.reliability [--kills 3] [--clicks 2000]

* ``kill -9`` while clicking: a child process opens the bundled sample with the default engine and clicks
  every 150 ms (positive and negative, through ``MainWindow.add_click``), logging the time of each click;
  after a few seconds it is killed with SIGKILL. The autosave it left is read back: the work lost is the
  time from the newest click it holds to the kill, an upper bound by up to one click interval (the
  autosave fires at most 1.5 s after the first unsaved change, however steadily the user clicks).
* Long session: ``--clicks`` clicks on one object of a 4096×4096 image with a click predictor whose
  prediction (probability and state) is a full-size float32 map (64 MiB each, like a network's); the resident
  memory after it and the session's bounded cache of predictions, against the unbounded growth of keeping
  every one,
  and the GUI-thread redraw (``MainWindow.refresh``) of that 4096² image with its current object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from model.prediction import Prediction

CLICK_INTERVAL_S = 0.15


def _child(folder: Path, log: Path) -> None:
    """Runs in the killed process: the window on a copy of the sample, clicking until killed."""
    from PySide6.QtWidgets import QApplication

    from isegformer_app.benchmarks.gui import SAMPLE_IMAGE, open_window, wait_ms

    app = QApplication.instance() or QApplication(sys.argv[:1])
    image = folder / "sample.jpg"
    image.write_bytes(SAMPLE_IMAGE.read_bytes())
    window, _ = open_window(image, folder)
    rng = np.random.default_rng(0)
    with open(log, "a", encoding="utf-8") as out:
        for i in range(100_000):
            y, x = float(rng.integers(40, 330)), float(rng.integers(40, 460))
            window.add_click(y, x, positive=i % 3 != 2)
            out.write(f"{time.time():.4f} {len(window.doc.clicks)}\n")
            out.flush()
            wait_ms(int(CLICK_INTERVAL_S * 1000))
    app.quit()


def measure_kill(seconds: float) -> dict:
    """Kill a clicking window after ``seconds``: the clicks made, those its autosave holds, the work lost."""
    from isegformer_app.state.autosave import read_sidecar

    with tempfile.TemporaryDirectory(prefix="isegformer-kill-") as tmp:
        folder, log = Path(tmp), Path(tmp) / "clicks.log"
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "ISEGFORMER_DATA_DIR": str(Path(tmp) / "data")}
        child = subprocess.Popen([sys.executable, "-m", "isegformer_app.benchmarks.reliability", "--child",
                                  str(folder), str(log)], env=env)  # fmt: skip
        deadline = time.time() + 120
        while (not log.exists() or not log.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)  # the window is up and clicking
        time.sleep(seconds)
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
        child.wait()
        made: dict[int, float] = {}  # click count -> when it was reached (a torn last line is skipped)
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                made[int(parts[1])] = float(parts[0])
        if not made:
            raise RuntimeError("the window made no click before it was killed")
        sidecars = list(folder.glob("**/*.isegformer.npz"))  # beside the image, or redirected
        saved = len(read_sidecar(sidecars[0]).meta["clicks"]) if sidecars else 0
        # an upper bound: the time since the newest click the autosave holds (or since the first click)
        held = [t for n, t in made.items() if n <= saved]
        since = max(held) if held else min(made.values())
        return {"clicks made": max(made), "clicks in the autosave": saved,
                "work lost (s)": round(killed_at - since, 2)}


class _BigStatePredictor:
    """Squares at the last 8 clicks; full-size float32 maps (64 MiB at 4096², like a network's
    probability and the state the next click continues from)."""

    name = "big-state"

    def set_image(self, image: np.ndarray) -> None:
        self.shape = image.shape[:2]

    def predict(self, clicks, state=None) -> Prediction:
        prob = np.zeros(self.shape, np.float32)
        for c in clicks[-8:]:
            y, x = int(c.y), int(c.x)
            prob[max(0, y - 40):y + 40, max(0, x - 40):x + 40] = 0.9 if c.is_positive else 0.0
        return Prediction.of(prob)


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_long_session(clicks: int) -> dict:
    from PIL import Image
    from PySide6.QtWidgets import QApplication

    from isegformer_app.benchmarks.gui import open_window, wait_until

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="isegformer-long-") as tmp:
        image = Path(tmp) / "large.png"
        Image.fromarray(np.full((4096, 4096, 3), 120, np.uint8)).save(image)
        predictor = _BigStatePredictor()
        window, _ = open_window(image, Path(tmp), engines={"big-state": lambda: predictor})
        before = _rss_mib()
        rng = np.random.default_rng(0)
        growth: list[int] = []  # RSS growth after each tenth of the clicks: levels off once caches fill
        for i in range(clicks):
            window.add_click(float(rng.integers(0, 4096)), float(rng.integers(0, 4096)), positive=i % 4 != 3)
            wait_until(lambda: not window.doc.needs_prediction(), 60, "the prediction")
            if (i + 1) % max(1, clicks // 10) == 0:
                app.processEvents()
                growth.append(round(_rss_mib() - before))
        after = _rss_mib()
        redraws = []  # the GUI-thread redraw after a prediction (overlay, outlines, panels) at 4096²
        for _ in range(7):
            started = time.perf_counter()
            window.document_view.redraw()
            redraws.append((time.perf_counter() - started) * 1000)
        cache = window.doc.current.predictions  # the app's one cache of predictions and their states
        held = sum(p.nbytes for p in cache.values()) / 2**20
        result = {"clicks": clicks, "RSS growth (MiB)": round(after - before), "growth along the way": growth,
                  "cached predictions": f"{len(cache)} kept, {held:.0f} MiB",
                  "redraw (ms, median of 7)": round(sorted(redraws)[3], 1),
                  "unbounded (every state kept)": f"{clicks * 64} MiB"}  # fmt: skip
        window.doc.saved_revision = window.doc.revision
        window.close()
        app.processEvents()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="kill -9 runs (0: skip)")
    parser.add_argument("--kill-after", type=float, default=6.0, help="seconds of clicking before the kill")
    parser.add_argument("--clicks", type=int, default=200, help="clicks of the long session (0: skip)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    rows = [measure_kill(args.kill_after) for _ in range(args.kills)]
    for row in rows:
        print("kill -9:", json.dumps(row))
    if rows:
        print(f"worst work lost under kill -9: {max(r['work lost (s)'] for r in rows):.2f} s")
    if args.clicks > 0:
        print("long session:", json.dumps(measure_long_session(args.clicks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
