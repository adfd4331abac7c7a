"""Side panel of volume annotation: view axis, slice, window/level, propagation."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSlider,
)

from isegformer_app.volumes import AXES, WindowPreset


def _button(text: str, tip: str, checkable: bool = False) -> QPushButton:
    button = QPushButton(text)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    button.setToolTip(tip)
    button.setCheckable(checkable)
    return button


class VolumePanel(QGroupBox):
    """Widgets only; the :class:`~isegformer_app.ui.volume_control.VolumeController` does the work."""

    axis_chosen = Signal(str)
    slice_chosen = Signal(int)
    preset_chosen = Signal(int)
    propagate = Signal(str)  # "prev" | "next" | "range"

    def __init__(self, parent=None) -> None:
        super().__init__("Volume", parent)
        self.axes = QButtonGroup(self)
        axis_row = QHBoxLayout()
        for axis in AXES:
            radio = QRadioButton(axis.capitalize())
            radio.setObjectName(axis)
            radio.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.axes.addButton(radio)
            axis_row.addWidget(radio)
        self.axes.buttonClicked.connect(lambda b: self.axis_chosen.emit(b.objectName()))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.slice_chosen.emit)
        self.slice_label = QLabel("–")
        self.presets = QComboBox()
        self.presets.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.presets.activated.connect(self.preset_chosen.emit)
        self.wl_button = _button("W/L drag", "Left drag changes window (right: wider) and level (down: "
                                 "higher); Alt+drag works with any tool", checkable=True)  # fmt: skip
        self.window_label = QLabel("")
        wl_row = QHBoxLayout()
        wl_row.addWidget(self.presets, 1)
        wl_row.addWidget(self.wl_button)
        prop_row = QHBoxLayout()
        for name, text, tip in (("prev", "◀ Prev", "Propagate the object to the previous slice"),
                                ("next", "Next ▶", "Propagate the object to the next slice"),
                                ("range", "Range…", "Propagate slice after slice up to a chosen slice")):
            button = _button(text, tip)
            button.clicked.connect(lambda _c=False, n=name: self.propagate.emit(n))
            prop_row.addWidget(button)
        form = QFormLayout(self)
        form.addRow("View", axis_row)
        form.addRow(self.slice_label, self.slider)
        form.addRow("Window", wl_row)
        form.addRow("", self.window_label)
        form.addRow("Propagate", prop_row)

    def show_view(self, axis: str, index: int, count: int) -> None:
        """Reflect the document's view without emitting signals."""
        for button in self.axes.buttons():
            button.setChecked(button.objectName() == axis)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.slice_label.setText(f"Slice {index + 1}/{count}")

    def set_presets(self, presets: list[WindowPreset]) -> None:
        self.presets.clear()
        for preset in presets:
            self.presets.addItem(f"{preset.name} ({preset.center:g}/{preset.width:g})")

    def show_window(self, window: WindowPreset) -> None:
        self.window_label.setText(f"level {window.center:.1f}  width {window.width:.1f}")
