"""Inference in a background thread: the GUI thread only posts requests and receives signals.

Control jobs (load an engine/checkpoint, set the image) run in the order posted. Prediction
requests are *coalesced*: only the latest one waits, a newer request replaces an older waiting one,
so a burst of clicks during a slow prediction costs one more prediction, not one per click.
The worker keeps no click state: a request carries the :class:`~model.prediction.PredictionState`
it continues from (the session's cache holds them) and its result carries the new one back.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QThread, Signal

from model.clicks import Click
from model.local_edits import LocalEdits
from model.prediction import Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD


@dataclass
class PredictRequest:
    """``image_key`` identifies the image the clicks belong to; ``state`` is what the prediction
    continues from (:meth:`~isegformer_app.state.click_session.ClickSession.prev_state`; None: a new
    object). ``local_edits``: the last click never loses the object far from itself, judged at
    ``threshold`` (:class:`model.local_edits.LocalEdits`; not for engines with ``own_click_rules``)."""

    image_key: str
    clicks: list[Click]
    state: PredictionState | None
    request_id: int = 0
    local_edits: bool = False
    threshold: float = DEFAULT_THRESHOLD


@dataclass
class PredictResult:
    """``latency_ms``: the request in the worker, which is the ``predict()`` call alone (also
    ``model_ms``), started at ``predict_started`` (``time.perf_counter()`` s). ``restored_pixels``: what
    the request's local edits put back that the prediction had taken away far from the click."""

    request: PredictRequest
    prediction: Prediction  # the probability and the state the next click continues from
    latency_ms: float
    engine: str = ""
    predict_started: float = 0.0
    restored_pixels: int = 0

    @property
    def model_ms(self) -> float:
        return self.latency_ms


SPARE_CORE_UP_TO = 2  # automatic thread choice: leave one core to the GUI on machines up to this size


def inference_threads(requested: int = 0, cores: int | None = None) -> int:
    """Torch intra-op threads of the inference worker; 0 = keep torch's default.

    ``requested`` > 0 is used as is. Automatic (``requested`` 0): on a machine with at most
    :data:`SPARE_CORE_UP_TO` cores (``cores``, default ``os.cpu_count()``), all cores but one, so
    that the GUI thread keeps a core while the model runs; on larger machines torch's default.
    """
    if requested > 0:
        return int(requested)
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores - 1) if cores <= SPARE_CORE_UP_TO else 0


@dataclass
class _Job:
    kind: str  # "engine" | "image" | "task"
    payload: object
    label: str = ""
    extra: dict = field(default_factory=dict)


class InferenceWorker(QThread):
    """Owns the predictor; every call on it happens in this thread."""

    prediction_ready = Signal(object)  # PredictResult
    engine_ready = Signal(str, str)  # engine name, device
    failed = Signal(str, str)  # what ("engine" | "image" | "predict"), message for the user
    image_ready = Signal(str)  # image key, once the predictor has taken the image (set_image returned)
    busy_changed = Signal(bool)
    task_progress = Signal(float, str)  # fraction, message of a run_task job (the ProgressCallback contract)
    task_result = Signal(object)  # an intermediate result of a run_task job
    task_done = Signal(str, object, str)  # label, return value, error message ("" if none)

    def __init__(self, parent=None, threads: int = 0, preload: Callable[[], None] | None = None) -> None:
        """``threads``: torch intra-op threads of this thread (:func:`inference_threads`; 0 = automatic).
        ``preload()`` runs first in this thread, before any job (the imports the predictors need)."""
        super().__init__(parent)
        self.threads = threads
        self.preload = preload
        self.torch_threads: int | None = None  # torch threads in effect in this thread, once it runs
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._pending: PredictRequest | None = None
        self._stop = False
        self._next_id = 0
        self.predictor = None
        self.image_key: str | None = None
        self.coalesced = 0  # requests replaced before they ran (for tests / diagnostics)

    # ------------------------------------------------------------ GUI side
    def load_engine(self, factory: Callable[[], object], label: str, device: str = "cpu") -> None:
        """Build a predictor with ``factory()`` in the worker; emits engine_ready or failed."""
        self._post(_Job("engine", factory, label, {"device": device}))

    def set_image(self, key: str, image: np.ndarray) -> None:
        self._post(_Job("image", image, key))

    def run_task(self, work: Callable, label: str) -> threading.Event:
        """Run ``work(predictor, emit_result, report, cancel)`` in this thread (after the queued jobs);
        ``report(fraction, message)``: the :data:`~isegformer_app.volumes.progress.ProgressCallback` contract.

        The predictor's image is restored afterwards; returns the cancel flag of the task.
        """
        cancel = threading.Event()
        self._post(_Job("task", work, label, {"cancel": cancel}))
        return cancel

    def request(self, req: PredictRequest) -> int:
        """Queue a prediction (replacing a waiting one); returns its request id."""
        with self._cond:
            self._next_id += 1
            req.request_id = self._next_id
            if self._pending is not None:
                self.coalesced += 1
            self._pending = req
            self._cond.notify()
        return req.request_id

    def latest_request_id(self) -> int:
        return self._next_id

    def stop(self, timeout_ms: int = 10000) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(timeout_ms)

    def _post(self, job: _Job) -> None:
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()

    # --------------------------------------------------------- worker side
    def run(self) -> None:
        import torch

        threads = inference_threads(self.threads)
        if threads > 0:
            torch.set_num_threads(threads)  # all torch work of the app runs in this thread
        self.torch_threads = torch.get_num_threads()
        if self.preload is not None:
            self.preload()
        while True:
            with self._cond:
                while not (self._stop or self._jobs or self._pending):
                    self._cond.wait()
                if self._stop:
                    return
                job = self._jobs.popleft() if self._jobs else None
                req = None
                if job is None:
                    req, self._pending = self._pending, None
            self.busy_changed.emit(True)
            try:
                if job is not None:
                    self._run_job(job)
                elif req is not None:
                    self._run_predict(req)
            finally:
                with self._cond:
                    idle = not (self._jobs or self._pending)
                if idle:
                    self.busy_changed.emit(False)

    def _run_job(self, job: _Job) -> None:
        if job.kind == "engine":
            try:
                predictor = job.payload()
            except Exception as exc:  # any failure to build must leave the app usable
                self.failed.emit("engine", f"{job.label}: {exc}")
                return
            self.predictor = predictor
            if self._image is not None and self._safe_set_image(self._image):
                self.image_ready.emit(self.image_key or "")
            device = job.extra.get("device", "cpu")
            precision = getattr(predictor, "autocast", None)
            shown = f"{device} {precision}" if precision else device
            self.engine_ready.emit(getattr(predictor, "name", job.label), shown)
        elif job.kind == "task":
            self._run_task(job)
        elif job.kind == "image":
            self._image, self.image_key = job.payload, job.label
            if self.predictor is not None and self._safe_set_image(job.payload):
                self.image_ready.emit(job.label)

    _image: np.ndarray | None = None

    def _run_task(self, job: _Job) -> None:
        if self.predictor is None:
            self.task_done.emit(job.label, None, "No segmentation engine is loaded (Model menu).")
            return
        result, error = None, ""
        try:
            result = job.payload(self.predictor, self.task_result.emit, self.task_progress.emit,
                                 job.extra["cancel"])
        except Exception as exc:  # reported to the user; the worker goes on
            traceback.print_exc()
            error = f"{exc}" or type(exc).__name__
        finally:
            if self._image is not None:
                self._safe_set_image(self._image)
        self.task_done.emit(job.label, result, error)

    def _safe_set_image(self, image: np.ndarray) -> bool:
        """Give the predictor ``image``; False (and ``failed`` emitted) if it refused it."""
        try:
            self.predictor.set_image(image)
        except Exception as exc:
            self.failed.emit("image", f"The model could not take this image: {exc}")
            return False
        return True

    def _run_predict(self, req: PredictRequest) -> None:
        if self.predictor is None:
            self.failed.emit("predict", "No segmentation engine is loaded (Model menu).")
            return
        if req.image_key != self.image_key:
            return  # the image changed since the click: drop it
        start = time.perf_counter()
        try:
            local = None
            if req.local_edits and not getattr(self.predictor, "own_click_rules", False):
                local = LocalEdits(self.predictor, req.threshold)
            prediction = (self.predictor if local is None else local).predict(req.clicks, req.state)
        except Exception as exc:
            traceback.print_exc()
            self.failed.emit("predict", f"Prediction failed: {exc}")
            return
        latency = (time.perf_counter() - start) * 1000.0
        name = getattr(self.predictor, "name", "")
        restored = local.restored if local is not None else 0
        self.prediction_ready.emit(PredictResult(req, prediction, latency, name, start, restored))
