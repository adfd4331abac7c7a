"""The canvas's clicks and brush strokes, sent as commands to the shown document.

The window is not on a click's way: canvas → :class:`CanvasInput` → document command → the document's
events → its subscribers (the mode's prediction link first, then the canvas, the panels, the window's
title, the autosave timer).
"""

from __future__ import annotations

from collections.abc import Callable

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.ui.canvas import CanvasView


class CanvasInput:
    """Sends ``canvas``'s clicks and strokes to the document ``shown()`` (nothing while none is shown)."""

    def __init__(self, canvas: CanvasView, shown: Callable[[], AnnotationDocument | None]) -> None:
        self.canvas, self.shown = canvas, shown
        canvas.clicked.connect(self.add_click)
        canvas.stroke_finished.connect(self.brush_stroke)

    def add_click(self, y: float, x: float, positive: bool) -> None:
        """A click on the object (``positive``) or the background at image pixel (y, x)."""
        doc = self.shown()
        if doc is not None:
            doc.add_click(y, x, positive)

    def brush_stroke(self, points: list, erase: bool) -> None:
        """Paint (or erase) along ``points`` on the selected object, else on the one being clicked on."""
        doc = self.shown()
        if doc is not None:
            doc.brush_stroke(points, self.canvas.brush_radius, erase, doc.selected_uid)
