"""Side panels: objects (select/rename/recolour/hide/delete/z-order), labels, view and tools."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QColorDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.labels import LabelClass, LabelList, relabel

TITLE_ROOM = 160  # px beside a dialog title for the window decorations (icon, close/maximise buttons)


def color_icon(color: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(*color))
    return QIcon(pix)


def _button(text: str, slot, tip: str = "") -> QPushButton:
    b = QPushButton(text)
    b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep Space/A/D for the shortcuts
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b


def input_dialog(parent: QWidget | None, title: str, label: str) -> QInputDialog:
    """A QInputDialog wide enough for its whole title (the static helpers size the dialog to its
    fields only, and the window manager then cuts the title short)."""
    dialog = QInputDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setLabelText(label)
    width = max(dialog.fontMetrics().horizontalAdvance(title), dialog.fontMetrics().horizontalAdvance(label))
    dialog.setMinimumWidth(width + TITLE_ROOM)
    # QInputDialog sets its own minimum from its layout when shown: the label's width is what holds
    dialog.findChild(QLabel).setMinimumWidth(width + TITLE_ROOM)
    return dialog


def ask_item(parent: QWidget, title: str, label: str, items: list[str], current: int = 0,
             editable: bool = True) -> tuple[str, bool]:  # fmt: skip
    """Like ``QInputDialog.getItem`` (same return value), with the title fully visible."""
    dialog = input_dialog(parent, title, label)
    dialog.setComboBoxItems(items)
    dialog.setComboBoxEditable(editable)
    if 0 <= current < len(items):
        dialog.setTextValue(items[current])
    ok = bool(dialog.exec())  # QDialog.Accepted = 1
    return dialog.textValue(), ok


def ask_text(parent: QWidget, title: str, label: str, text: str = "") -> tuple[str, bool]:
    """Like ``QInputDialog.getText`` (same return value), with the title fully visible."""
    dialog = input_dialog(parent, title, label)
    dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
    dialog.setTextValue(text)
    ok = bool(dialog.exec())  # QDialog.Accepted = 1
    return dialog.textValue(), ok


def ask_color(parent: QWidget, initial: tuple[int, int, int]) -> tuple[int, int, int] | None:
    chosen = QColorDialog.getColor(QColor(*initial), parent, "Choose colour")
    return (chosen.red(), chosen.green(), chosen.blue()) if chosen.isValid() else None


class ObjectsPanel(QGroupBox):
    """Finished objects, top of the z-order first; the check box shows/hides an object.

    ``labels_changed`` is emitted when a rename added a class to the label list.
    """

    labels_changed = Signal()
    edit_requested = Signal(int)  # double-click on object ``uid``: edit it (as Return does)

    def __init__(self, labels: LabelList, parent=None) -> None:
        super().__init__("Objects", parent)
        self.labels = labels
        self.doc: AnnotationDocument | None = None
        self.list = QListWidget()
        self.list.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.list.currentItemChanged.connect(self._on_select)
        self.list.itemDoubleClicked.connect(
            lambda item: self.edit_requested.emit(int(item.data(Qt.ItemDataRole.UserRole))))
        self.list.itemChanged.connect(self._on_check)
        grid = QGridLayout()
        buttons = [("Rename", self.rename), ("Colour", self.recolor), ("Delete", self.delete),
                   ("Up", lambda: self.move(+1)), ("Down", lambda: self.move(-1))]  # fmt: skip
        for i, (text, slot) in enumerate(buttons):
            grid.addWidget(_button(text, slot), i // 3, i % 3)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(grid)
        self._filling = False

    def set_document(self, doc: AnnotationDocument | None) -> None:
        """Show the objects of ``doc`` from now on: the list follows its object and selection events (a
        prediction, which changes neither, leaves the list alone)."""
        if self.doc is not None:
            self.doc.events.objects.disconnect(self.refresh)
            self.doc.events.selection.disconnect(self.refresh)
        self.doc = doc
        if doc is not None:
            doc.events.objects.connect(self.refresh)
            doc.events.selection.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: object = None) -> None:
        """Show the document's objects. The items are updated in place while the objects stay the same
        (a refill between the two clicks of a double-click would lose it)."""
        self._filling = True
        try:
            objects = list(reversed(self.doc.objects)) if self.doc is not None else []  # top first
            uid_role, color_role = Qt.ItemDataRole.UserRole, Qt.ItemDataRole.UserRole + 1
            shown = [self.list.item(row).data(uid_role) for row in range(self.list.count())]
            if [o.uid for o in objects] != shown:
                self.list.clear()
                for obj in objects:
                    item = QListWidgetItem()
                    item.setData(uid_role, obj.uid)
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    self.list.addItem(item)
            current = None
            for row, obj in enumerate(objects):
                item = self.list.item(row)
                text = f"{len(objects) - row}  {obj.label}"
                if item.text() != text:
                    item.setText(text)
                if item.data(color_role) != list(obj.color):
                    item.setData(color_role, list(obj.color))
                    item.setIcon(color_icon(obj.color))
                state = Qt.CheckState.Checked if obj.visible else Qt.CheckState.Unchecked
                if item.checkState() != state:
                    item.setCheckState(state)
                if obj.uid == self.doc.selected_uid:
                    current = item
            if self.list.currentItem() is not current:
                self.list.setCurrentItem(current)
        finally:
            self._filling = False

    def selected_uid(self) -> int | None:
        return self.doc.selected_uid if self.doc else None

    def _on_select(self, item: QListWidgetItem | None, _prev=None) -> None:
        if self._filling or self.doc is None:
            return
        self.doc.select(item.data(Qt.ItemDataRole.UserRole) if item else None)

    def _on_check(self, item: QListWidgetItem) -> None:
        if self._filling or self.doc is None:
            return
        uid = item.data(Qt.ItemDataRole.UserRole)
        self.doc.set_visible(uid, item.checkState() == Qt.CheckState.Checked)

    def rename(self) -> None:
        uid = self.selected_uid()
        if uid is None:
            return
        obj = self.doc.object(uid)
        names = self.labels.names()
        current = names.index(obj.label) if obj.label in names else 0
        name, ok = ask_item(self, "Rename object", "Class label:", names, current, True)
        if ok and name.strip():
            self.relabel(uid, name.strip())

    def relabel(self, uid: int, name: str) -> None:
        """Give object ``uid`` the class ``name`` and with it that class's colour (a new name becomes
        a new class)."""
        count = len(self.labels)
        relabel(self.doc, uid, self.labels, name)
        if len(self.labels) != count:
            self.labels_changed.emit()

    def recolor(self) -> None:
        uid = self.selected_uid()
        if uid is not None:
            color = ask_color(self, self.doc.object(uid).color)
            if color is not None:
                self.doc.recolor_object(uid, color)

    def delete(self) -> None:
        uid = self.selected_uid()
        if uid is not None:
            self.doc.delete_object(uid)

    def move(self, delta: int) -> None:
        uid = self.selected_uid()
        if uid is not None:
            self.doc.move_object(uid, self.doc.object_index(uid) + delta)


class LabelsPanel(QGroupBox):
    """The editable class list; the selected class is given to the next finished object."""

    changed = Signal()

    def __init__(self, labels: LabelList, parent=None) -> None:
        super().__init__("Labels", parent)
        self.labels = labels
        self.list = QListWidget()
        self.list.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        row = QHBoxLayout()
        for text, slot in (("Add", self.add), ("Rename", self.rename), ("Colour", self.recolor)):
            row.addWidget(_button(text, slot))
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(row)
        self.refresh()
        self.list.setCurrentRow(0)

    def refresh(self) -> None:
        row = max(0, self.list.currentRow())
        self.list.clear()
        for i, cls in enumerate(self.labels.classes, start=1):
            self.list.addItem(QListWidgetItem(color_icon(cls.color), f"{i}  {cls.name}"))
        self.list.setCurrentRow(min(row, len(self.labels) - 1))

    def current(self) -> LabelClass:
        """The selected class (the first one if none is selected, or while the list is refilled)."""
        row = self.list.currentRow()
        return self.labels.classes[row if 0 <= row < len(self.labels) else 0]

    def add(self) -> None:
        name, ok = ask_text(self, "New label", "Class name:")
        if ok and name.strip():
            self.labels.ensure(name.strip())
            self.refresh()
            self.list.setCurrentRow(len(self.labels) - 1)
            self.changed.emit()

    def rename(self) -> None:
        cls = self.current()
        name, ok = ask_text(self, "Rename label", "Class name:", text=cls.name)
        if ok and name.strip() and name.strip() != cls.name:
            try:
                self.labels.rename(cls.name, name.strip())
            except ValueError as exc:
                self.window().inform("Rename label", str(exc), error=True)
                return
            self.refresh()
            self.changed.emit()

    def recolor(self) -> None:
        cls = self.current()
        color = ask_color(self, cls.color)
        if color is not None:
            cls.color = color
            self.refresh()
            self.changed.emit()


class SidePanels(QScrollArea):
    """The column of panels beside the canvas: as wide as its widest panel needs, and scrolled
    (vertically) when the window is too short for all of them, so no panel is ever squeezed below the
    room its widgets need."""

    MIN_WIDTH = 300

    def __init__(self, column: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidget(column)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.fit_width()

    def fit_width(self) -> None:
        """Width for the widest panel shown now, plus room for the scroll bar."""
        need = self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        self.setFixedWidth(max(self.MIN_WIDTH, need))


class ViewPanel(QGroupBox):
    """Tool choice, brush size, overlay opacity and probability threshold (slider units: 1/100).

    The current opacity (percent) and threshold are shown beside their sliders, the brush radius in
    its box (pixels). Rows whose widgets do not fit beside their label go below it.
    """

    tool_changed = Signal(str)

    def __init__(self, opacity: float, threshold: float, brush_radius: int, parent=None) -> None:
        super().__init__("View and tools", parent)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(opacity * 100))
        self.opacity_value = _value_label("100 %")
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(1, 99)
        self.threshold.setValue(round(threshold * 100))
        self.threshold_value = _value_label("100 %")  # as wide as the opacity value: sliders align
        self.opacity.valueChanged.connect(self._show_values)
        self.threshold.valueChanged.connect(self._show_values)
        self.brush = QSpinBox()
        self.brush.setRange(1, 200)
        self.brush.setSuffix(" px")
        self.brush.setValue(brush_radius)
        self.tools = QButtonGroup(self)
        tool_row = QHBoxLayout()
        for name, text in (("click", "Click"), ("brush", "Brush"), ("eraser", "Eraser")):
            radio = QRadioButton(text)
            radio.setObjectName(name)
            radio.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            radio.setChecked(name == "click")
            self.tools.addButton(radio)
            tool_row.addWidget(radio)
        tool_row.addStretch(1)
        self.tools.buttonClicked.connect(lambda b: self.tool_changed.emit(b.objectName()))
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Tool", tool_row)
        form.addRow("Brush radius", self.brush)
        form.addRow("Opacity", _with_value(self.opacity, self.opacity_value))
        form.addRow("Threshold", _with_value(self.threshold, self.threshold_value))
        self._show_values()

    def _show_values(self, _value: int = 0) -> None:
        self.opacity_value.setText(f"{self.opacity.value()} %")
        self.threshold_value.setText(f"{self.threshold.value() / 100:.2f}")

    def show_threshold(self, threshold: float) -> None:
        """Show a document's threshold on the slider (not sent back as a change by the user)."""
        with QSignalBlocker(self.threshold):
            self.threshold.setValue(round(threshold * 100))
        self._show_values()

    def set_tool(self, name: str) -> None:
        for b in self.tools.buttons():
            b.setChecked(b.objectName() == name)
        self.tool_changed.emit(name)


def _value_label(widest: str) -> QLabel:
    """A right-aligned number label as wide as ``widest`` (so the slider beside it does not jump)."""
    label = QLabel(widest)
    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    label.setMinimumWidth(label.fontMetrics().horizontalAdvance(widest) + 4)
    return label


def _with_value(slider: QSlider, value: QLabel) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(slider, 1)
    row.addWidget(value)
    return row
