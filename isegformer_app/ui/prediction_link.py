"""A mode's link to the inference worker: requests for the shown document, results back into it.

The link is the first subscriber of the document's :class:`~isegformer_app.state.events.ClicksChanged`
(a click, an undo, a redo): the request is sent before anything is drawn. The worker's results come
here, to the mode that asked (not through the window): the prediction is stored in the document it was
asked for (``set_prediction`` with the document's ``prediction_key``), whose events redraw the canvas;
``shown(request_id)`` follows when it is on screen.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.events import ClicksChanged
from isegformer_app.ui.worker import InferenceWorker, PredictRequest, PredictResult

KEEP_PENDING = 64  # requests remembered (their answers may come after newer ones were sent)
KEPT_NOTICE_SHARE = 0.001  # local edits that put back at least this share of the image are told of


class PredictionLink(QObject):
    """Predictions of one mode: :meth:`request` for the shown document, results stored into it."""

    shown = Signal(int)  # request id, once its prediction is in the document shown (and on the canvas)

    def __init__(self, worker: InferenceWorker, inform: Callable[..., None],
                 show_busy: Callable[[bool], None], parent: QObject | None = None,
                 local_edits: Callable[[], bool] = lambda: True) -> None:  # fmt: skip
        """``local_edits()``: whether the next request's click may not lose the object far from itself."""
        super().__init__(parent)
        self.worker, self.inform, self.show_busy = worker, inform, show_busy
        self.local_edits = local_edits
        self.doc: AnnotationDocument | None = None
        self.image_key = ""  # the key the worker knows the shown image (or slice) by
        self.pending: dict[int, object] = {}  # request id -> the document's prediction key
        worker.prediction_ready.connect(self._on_result)

    def attach(self, doc: AnnotationDocument | None, image_key: str = "") -> None:
        """Predict for ``doc`` shown as ``image_key`` (attach before the widgets subscribe to ``doc``);
        answers to requests for another document are dropped (those for another slice of the same volume
        are stored in their slice)."""
        if doc is not self.doc:
            self.pending.clear()
            if self.doc is not None:
                self.doc.events.clicks.disconnect(self._on_clicks)
            if doc is not None:
                doc.events.clicks.connect(self._on_clicks)
        self.doc, self.image_key = doc, image_key

    def _on_clicks(self, _event: ClicksChanged) -> None:
        self.request()

    def request(self) -> bool:
        """Send a prediction request if the shown clicks need one; True if one was sent."""
        doc = self.doc
        if doc is None or not doc.needs_prediction():
            return False
        request_id = self.worker.request(PredictRequest(
            self.image_key, list(doc.clicks), doc.prev_state_for_request(),
            local_edits=self.local_edits(), threshold=doc.threshold))  # fmt: skip
        self.pending = {k: v for k, v in self.pending.items() if k > request_id - KEEP_PENDING}
        self.pending[request_id] = doc.prediction_key()
        self.show_busy(True)
        return True

    def _on_result(self, result: PredictResult) -> None:
        request_id = result.request.request_id
        if self.doc is None or request_id not in self.pending:
            return  # another mode's, or for a document closed since
        key = self.pending.pop(request_id)
        try:
            shown = self.doc.set_prediction(result.request.clicks, result.prediction, key)
        except ValueError as exc:
            self.inform("Prediction", f"The model returned a wrong-size mask: {exc}", error=True)
            return
        if shown and result.restored_pixels >= KEPT_NOTICE_SHARE * result.prediction.prob.size:
            self.inform("Prediction", f"Kept {result.restored_pixels:,} px that the click would have removed "
                        "far from itself (Model > Clicks obey and never lose the object)")  # fmt: skip
        if shown:
            self.shown.emit(request_id)
        if request_id == self.worker.latest_request_id():
            self.request()  # e.g. undo moved to click lists whose requests were coalesced away
