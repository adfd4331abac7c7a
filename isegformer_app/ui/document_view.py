"""The shown document on the canvas: overlay, outlines and click dots, redrawn on the document's events.

One subscriber of the document (:mod:`isegformer_app.state.events`), as napari's layer visuals are: new
clicks redraw the dots at once and the overlay when the prediction is there (the previous one stays up
meanwhile), a prediction, a change of objects, of the selection, the threshold or the slice redraw the
overlay. The objects panel and the autosave scheduler are subscribers of their own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.events import ClicksChanged
from isegformer_app.ui.canvas import CanvasView
from isegformer_app.ui.overlay import nothing_to_draw, outline_segments, outlined_masks, render_overlay


class DocumentView:
    """Draws one document (``show(doc)``) on ``canvas`` at the overlay ``opacity()`` (0..1)."""

    def __init__(self, canvas: CanvasView, opacity: Callable[[], float]) -> None:
        self.canvas, self.opacity = canvas, opacity
        self.doc: AnnotationDocument | None = None

    def _emitters(self, doc: AnnotationDocument) -> list:
        e = doc.events
        return [e.prediction, e.objects, e.selection, e.view, e.threshold]

    def show(self, doc: AnnotationDocument | None) -> None:
        """Draw ``doc`` from now on (None: draw nothing more), following its events."""
        if self.doc is not None:
            self.doc.events.clicks.disconnect(self._on_clicks)
            for emitter in self._emitters(self.doc):
                emitter.disconnect(self.redraw)
        self.doc = doc
        if doc is not None:
            doc.events.clicks.connect(self._on_clicks)
            for emitter in self._emitters(doc):
                emitter.connect(self.redraw)
            self.redraw()

    def _on_clicks(self, _event: ClicksChanged) -> None:
        """The dots at once; the overlay waits for the prediction of the new clicks when one is coming."""
        self.draw(overlay=not self.doc.needs_prediction())

    def redraw(self, _event: object = None) -> None:
        self.draw(overlay=True)

    def draw(self, overlay: bool = True) -> None:
        """Draw the overlay (unless ``overlay`` is False) and the click dots of the shown document."""
        doc = self.doc
        if doc is None:
            return
        current = doc.current_mask() if overlay else None  # one full-size pass for the whole redraw
        if overlay and nothing_to_draw(doc, current):
            self.canvas.set_overlay(None)
            self.canvas.set_outlines(np.zeros((0, 4)))
        elif overlay:
            borders = [outline_segments(mask) for mask in outlined_masks(doc, current)]
            in_screen_pixels = all(b is not None for b in borders)  # else (noisy masks) as pixels
            rgba = render_overlay(doc, self.opacity(), outlines=not in_screen_pixels, current=current)
            self.canvas.set_overlay(rgba)
            self.canvas.set_outlines(np.concatenate(borders) if in_screen_pixels and borders
                                     else np.zeros((0, 4)))  # fmt: skip
        self.canvas.set_clicks(doc.clicks)
        if doc.objects or doc.clicks:
            self.canvas.set_hint(None)  # restored work: the user knows how to click
