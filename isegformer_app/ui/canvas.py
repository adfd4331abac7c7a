"""The image canvas: zoom at the cursor, pan, clicks, brush strokes. Scene units = image pixels."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
)

from model.clicks import Click

DOT_RADIUS = 5.0  # screen pixels (dots ignore the zoom)
POSITIVE_COLOR = QColor(40, 220, 60)
NEGATIVE_COLOR = QColor(230, 40, 40)
DOT_PEN = QPen(QColor(255, 255, 255), 1.5)
# What the mouse does on the canvas (the shortcut sheet lists these beside the keys of the actions).
MOUSE_BINDINGS: tuple[tuple[str, str], ...] = (
    ("Left click", "Positive click (object)"),
    ("Right click, Shift+left click", "Negative click (background)"),
    ("Left drag (brush / eraser tool)", "Paint / erase the mask"),
    ("Wheel", "Zoom at the cursor"),
    ("Middle drag, Ctrl+left drag", "Pan"),
    ("Alt+left drag (volumes)", "Window / level"),
)


def to_qimage(array: np.ndarray) -> QImage:
    """HxWx3 RGB or HxWx4 RGBA uint8 -> QImage (a deep copy, safe after ``array`` changes)."""
    array = np.ascontiguousarray(array)
    h, w, c = array.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    return QImage(array.data, w, h, array.strides[0], fmt).copy()


def to_display_qimage(rgb: np.ndarray) -> QImage:
    """HxWx3 RGB uint8 -> an RGB32 QImage that becomes a QPixmap without conversion (a deep copy).

    Safe in a background thread: an image load prepares it there, so that the GUI thread only wraps
    it (``QPixmap.fromImage`` of RGB32 is a copy-free handover; from RGB888 it converts every pixel,
    about 100 ms at 4096²).
    """
    if sys.byteorder != "little":  # RGB32 is 0xffRRGGBB in native order
        return to_qimage(rgb)
    bgrx = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
    h, w = bgrx.shape[:2]
    return QImage(bgrx.data, w, h, bgrx.strides[0], QImage.Format.Format_RGB32).copy()


class CanvasView(QGraphicsView):
    """Left click = positive, right or Shift+left = negative; brush tools paint with the left button.

    Pan with the middle button or Ctrl+left drag; the wheel zooms at the cursor. Window/level: left
    drag with the "wl" tool or Alt+left drag emits ``window_dragged`` (screen pixels moved).
    ``pixel_aspect`` (height/width of one image pixel, from a volume's spacing) stretches the view.

    :meth:`set_hint` puts a one-line hint at the top of the view; it shows while an image is
    displayed and goes away with the first click.
    """

    clicked = Signal(float, float, bool)  # y, x, positive
    stroke_finished = Signal(list, bool)  # [(y, x), ...], erase
    window_dragged = Signal(float, float)  # dx, dy (screen pixels)
    hovered = Signal(float, float)  # y, x of the image pixel under the cursor; (-1, -1) off the image

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setMouseTracking(True)
        self.image_item = QGraphicsPixmapItem()
        self.overlay_item = QGraphicsPixmapItem()
        self.overlay_item.setZValue(1)
        self.stroke_item = QGraphicsPathItem()
        self.stroke_item.setZValue(2)
        self.outline_item = QGraphicsPathItem()  # mask borders, drawn in screen pixels at any zoom
        self.outline_item.setZValue(1.5)
        outline_pen = QPen(QColor(255, 255, 255, 230), 1.5)
        outline_pen.setCosmetic(True)
        self.outline_item.setPen(outline_pen)
        self.scene().addItem(self.outline_item)
        self._crosshair: tuple[float, float] | None = None
        self.crosshair_item = QGraphicsPathItem()  # volumes: the point linked between the views
        self.crosshair_item.setZValue(3)
        crosshair_pen = QPen(QColor(255, 210, 0, 200), 1)
        crosshair_pen.setCosmetic(True)  # one screen pixel at any zoom
        crosshair_pen.setDashPattern([4, 4])
        self.crosshair_item.setPen(crosshair_pen)
        for item in (self.image_item, self.overlay_item, self.stroke_item, self.crosshair_item):
            self.scene().addItem(item)
        self.dots: list[QGraphicsEllipseItem] = []
        self._dot_states: list[tuple[float, float, bool] | None] = []  # (x, y, positive) shown per dot
        self.tool = "click"  # "click" | "brush" | "eraser"
        self.brush_radius = 8
        self.image_size: tuple[int, int] = (0, 0)  # (h, w)
        self._pan_from: QPointF | None = None
        self._stroke: list[tuple[float, float]] | None = None
        self._wl_from: QPointF | None = None
        self.pixel_aspect = 1.0
        self.hint_label = QLabel(self.viewport())
        self.hint_label.setObjectName("canvas_hint")
        self.hint_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hint_label.setStyleSheet("QLabel#canvas_hint { background: rgba(0, 0, 0, 170); color: white;"
                                      " padding: 4px 10px; border-radius: 4px; }")  # fmt: skip
        self.hint_label.hide()
        self._hint: str | None = None

    # ------------------------------------------------------------ hint
    def set_hint(self, text: str | None) -> None:
        """Show ``text`` as a one-line hint over the top of the view (while an image is displayed);
        None hides it. The first click hides it too."""
        self._hint = text or None
        if self._hint is not None:
            self.hint_label.setText(self._hint)
            self.hint_label.adjustSize()
        self._place_hint()

    def hint(self) -> str | None:
        """The hint text now on screen, None when none is shown."""
        return self._hint if self.hint_label.isVisibleTo(self) else None

    def _place_hint(self) -> None:
        shown = self._hint is not None and self.image_size[0] > 0
        if shown:
            view = self.viewport().rect()
            label = self.hint_label
            label.move(max(0, (view.width() - label.width()) // 2), 8)
        self.hint_label.setVisible(shown)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._place_hint()

    # ------------------------------------------------------------ content
    def set_image(self, rgb: np.ndarray, pixel_aspect: float = 1.0, keep_view: bool = False,
                  prepared: QImage | None = None) -> None:  # fmt: skip
        """Show ``rgb``; ``keep_view`` keeps zoom and position when the size and aspect are unchanged;
        ``prepared``: ``to_display_qimage(rgb)`` made beforehand (in a background thread)."""
        same = (rgb.shape[0], rgb.shape[1]) == self.image_size and pixel_aspect == self.pixel_aspect
        self.image_size = (rgb.shape[0], rgb.shape[1])
        self.pixel_aspect = float(pixel_aspect)
        shown = prepared if prepared is not None else to_display_qimage(rgb)
        self.image_item.setPixmap(QPixmap.fromImage(shown))
        self._place_hint()
        if keep_view and same:
            return
        self.overlay_item.setPixmap(QPixmap())
        self.outline_item.setPath(QPainterPath())
        self.scene().setSceneRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))
        self.fit_to_window()

    def set_outlines(self, segments: np.ndarray) -> None:
        """Mask borders drawn in screen pixels: Kx4 (x0, y0, x1, y1) segments in scene units, on the
        pixel edges (see :func:`~isegformer_app.ui.overlay.outline_segments`)."""
        path = QPainterPath()
        for x0, y0, x1, y1 in np.asarray(segments, np.float64).reshape(-1, 4).tolist():
            path.moveTo(x0, y0)
            path.lineTo(x1, y1)
        self.outline_item.setPath(path)

    def set_crosshair(self, point: tuple[float, float] | None) -> None:
        """Dashed lines through the centre of image pixel ``point`` = (y, x); None removes them."""
        path = QPainterPath()
        h, w = self.image_size
        self._crosshair = point if point is not None and 0 <= point[0] < h and 0 <= point[1] < w else None
        if self._crosshair is not None:
            y, x = point[0] + 0.5, point[1] + 0.5
            path.moveTo(0, y)
            path.lineTo(w, y)
            path.moveTo(x, 0)
            path.lineTo(x, h)
        self.crosshair_item.setPath(path)

    def crosshair(self) -> tuple[float, float] | None:
        """The (y, x) pixel the crosshair marks, None when hidden."""
        return self._crosshair

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        """Show the HxWx4 RGBA overlay; None clears it."""
        self.overlay_item.setPixmap(QPixmap() if rgba is None else QPixmap.fromImage(to_qimage(rgba)))

    def set_clicks(self, clicks: Sequence[Click]) -> None:
        """Show ``clicks`` as dots, updating only the dots that changed: a refresh after each click
        touches one item, not all of them (Qt item setters are not free, and PySide6 6.12.0 leaked a
        reference on each one)."""
        scene = self.scene()
        wanted = [(click.x + 0.5, click.y + 0.5, click.is_positive) for click in clicks]
        while len(self.dots) > len(wanted):
            scene.removeItem(self.dots.pop())
            self._dot_states.pop()
        r = DOT_RADIUS
        for index, state in enumerate(wanted):
            if index == len(self.dots):
                dot = QGraphicsEllipseItem(-r, -r, 2 * r, 2 * r)
                dot.setPen(DOT_PEN)
                dot.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
                dot.setZValue(3)
                scene.addItem(dot)
                self.dots.append(dot)
                self._dot_states.append(None)
            old = self._dot_states[index]
            if old == state:
                continue
            dot = self.dots[index]
            if old is None or old[2] != state[2]:
                dot.setBrush(POSITIVE_COLOR if state[2] else NEGATIVE_COLOR)
            if old is None or old[:2] != state[:2]:
                dot.setPos(state[0], state[1])
            self._dot_states[index] = state

    def fit_to_window(self) -> None:
        h, w = self.image_size
        if not h:
            return
        if self.pixel_aspect == 1.0:
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            return
        view = self.viewport().rect()
        scale = min(max(view.width() - 4, 1) / w, max(view.height() - 4, 1) / (h * self.pixel_aspect))
        self.setTransform(QTransform.fromScale(scale, scale * self.pixel_aspect))
        self.centerOn(w / 2, h / 2)

    def zoom(self, factor: float, anchor: QPoint | None = None) -> None:
        """Scale by ``factor`` keeping the image point under ``anchor`` (viewport pixels) in place."""
        if anchor is None:
            self.scale(factor, factor)  # about the view centre
            return
        fixed = self.mapToScene(anchor)
        self.scale(factor, factor)
        moved = self.mapFromScene(fixed) - anchor
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + moved.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + moved.y())

    def image_to_view(self, y: float, x: float) -> QPoint:
        """Viewport position of the centre of image pixel (y, x) (for tests and tooltips)."""
        return self.mapFromScene(QPointF(x + 0.5, y + 0.5))

    # ------------------------------------------------------------ events
    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt name)
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(1.25**steps, event.position().toPoint())
        event.accept()

    def _pixel(self, event) -> tuple[float, float] | None:
        p = self.mapToScene(event.position().toPoint())
        y, x = int(np.floor(p.y())), int(np.floor(p.x()))
        h, w = self.image_size
        return (float(y), float(x)) if 0 <= y < h and 0 <= x < w else None

    def mousePressEvent(self, event) -> None:  # noqa: N802
        button, mods = event.button(), event.modifiers()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ControlModifier
        ):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if (self.tool == "wl" and button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)) or (
            button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.AltModifier
        ):  # W/L mode: left or right drag (Alt+drag is often taken by the window manager)
            self._wl_from = event.position()
            return
        pixel = self._pixel(event)
        if pixel is None:
            return
        if self.tool == "click" and button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            if self._hint is not None:
                self.set_hint(None)  # the user has found out how to click
            self.clicked.emit(pixel[0], pixel[1], button == Qt.MouseButton.LeftButton and not shift)
        elif self.tool in ("brush", "eraser") and button == Qt.MouseButton.LeftButton:
            self._stroke = [pixel]
            self._update_stroke_preview()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            return
        if self._wl_from is not None:
            delta = event.position() - self._wl_from
            self._wl_from = event.position()
            self.window_dragged.emit(float(delta.x()), float(delta.y()))
            return
        if self._stroke is not None:
            p = self.mapToScene(event.position().toPoint())
            self._stroke.append((float(p.y()), float(p.x())))
            self._update_stroke_preview()
        pixel = self._pixel(event)
        self.hovered.emit(*(pixel if pixel is not None else (-1.0, -1.0)))

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().leaveEvent(event)
        self.hovered.emit(-1.0, -1.0)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().unsetCursor()
            return
        if self._wl_from is not None:
            self._wl_from = None
            return
        if self._stroke is not None:
            points, self._stroke = self._stroke, None
            self.stroke_item.setPath(QPainterPath())
            self.stroke_finished.emit(points, self.tool == "eraser")

    def _update_stroke_preview(self) -> None:
        path = QPainterPath()
        (y0, x0), rest = self._stroke[0], self._stroke[1:]
        path.moveTo(x0 + 0.5, y0 + 0.5)
        for y, x in rest or [(y0, x0 + 0.01)]:
            path.lineTo(x + 0.5, y + 0.5)
        color = QColor(255, 80, 80, 140) if self.tool == "eraser" else QColor(80, 160, 255, 140)
        pen = QPen(color, 2 * self.brush_radius + 1)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self.stroke_item.setPen(pen)
        self.stroke_item.setPath(path)

    def contextMenuEvent(self, event) -> None:  # noqa: N802 (right click is a negative click)
        event.accept()
