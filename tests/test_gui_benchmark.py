"""The GUI benchmark's measurements on the real window (offscreen) with a fast fake predictor."""

from __future__ import annotations

import math
import shutil
import time

from fakes import DiskPredictor

from isegformer_app.benchmarks.gui import (
    OBJECT_CLICKS,
    ClickTiming,
    TickProbe,
    VolumeOpenTiming,
    click_plan,
    close_window,
    format_table,
    measure_clicks,
    measure_image_open,
    measure_volume_open,
    open_window,
    write_benchmark_series,
    write_large_photo,
)
from isegformer_app.benchmarks.gui import SAMPLE_IMAGE as SAMPLE

DELAY_S = 0.02
GUI_STALL_S = 0.06


def sleepy_disks() -> DiskPredictor:
    """Sleeps DELAY_S per prediction, then disks of radius 15 at positive clicks."""
    return DiskPredictor(radius=15, delay=DELAY_S, negative=0.0)


def test_measure_clicks_on_the_real_window(qtbot, tmp_path, messages) -> None:
    image = tmp_path / "sample.jpg"
    shutil.copy(SAMPLE, image)
    predictor = sleepy_disks()
    window, timed = open_window(image, tmp_path, engines={"sleepy": lambda: predictor}, timeout_s=30)
    qtbot.addWidget(window)

    doc = window.doc

    def block_gui_after_second_prediction(_event) -> None:
        if doc.prob is not None and len(doc.clicks) == 2:
            time.sleep(GUI_STALL_S)  # a stall in the GUI thread the probe must see

    doc.events.prediction.connect(block_gui_after_second_prediction)
    try:
        timings = measure_clicks(window, timed, clicks=2, warmup=0, timeout_s=20)
    finally:
        close_window(window)

    assert len(timings) == 2 and len(predictor.calls) == 2
    assert [c.coords for c in window.doc.clicks] == [(float(y), float(x)) for y, x, _ in OBJECT_CLICKS[0][:2]]
    assert window.doc.current_mask()[OBJECT_CLICKS[0][0][:2]]  # the prediction reached the document
    for t in timings:
        assert t.model_ms >= DELAY_S * 1000 * 0.99  # the wrapper timed the predictor's sleep
        assert t.press_to_paint_ms >= t.model_ms  # inference starts after the press
        assert 0 < t.release_to_paint_ms <= t.press_to_paint_ms
        assert t.handoff_ms > 0 and t.shown_to_paint_ms > 0
        assert t.press_to_predict_ms > 0
        parts = t.press_to_predict_ms + t.model_ms + t.handoff_ms + t.shown_to_paint_ms
        assert math.isclose(parts, t.press_to_paint_ms, rel_tol=1e-9)  # the breakdown adds up
        assert math.isfinite(t.stall_click_ms) and t.stall_click_ms > 0
        assert math.isfinite(t.stall_predict_ms) and t.stall_predict_ms > 0
        assert t.paint_covers_click  # the timed paint is the one that shows the overlay at the click
    assert timings[1].stall_click_ms >= GUI_STALL_S * 1000 * 0.99
    assert timings[1].handoff_ms >= GUI_STALL_S * 1000 * 0.99


def test_measure_volume_open_through_the_window(qtbot, tmp_path, messages) -> None:
    image = tmp_path / "sample.jpg"
    shutil.copy(SAMPLE, image)
    window, _ = open_window(image, tmp_path, engines={"sleepy": sleepy_disks}, timeout_s=30)
    qtbot.addWidget(window)
    series = write_benchmark_series(tmp_path / "series", slices=6, size=48)
    try:
        opens = [measure_volume_open(window, series, timeout_s=30) for _ in range(2)]
        assert window.volume.active and window.volume.doc.volume.shape == (6, 48, 48)
    finally:
        close_window(window)
    for timing in opens:
        assert timing.seconds > 0 and math.isfinite(timing.stall_ms) and timing.stall_ms > 0


def test_tick_gaps_overlapping_a_window() -> None:
    probe = TickProbe()
    probe.ticks = [0.000, 0.005, 0.010, 0.060, 0.065, 0.200]
    assert math.isclose(probe.max_gap_ms(0.020, 0.030), 50.0)  # inside the 10..60 ms gap
    assert math.isclose(probe.max_gap_ms(0.001, 0.062), 50.0)
    assert math.isclose(probe.max_gap_ms(0.001, 0.070), 135.0)  # a gap still open at the end counts
    assert math.isclose(probe.max_gap_ms(0.062, 0.064), 5.0)
    assert math.isclose(probe.max_gap_ms(0.064, 0.300), 135.0)
    assert math.isnan(probe.max_gap_ms(0.300, 0.400))


def test_click_plan_and_table() -> None:
    plan = click_plan(8)
    first = [(y, x, pos) for y, x, pos, _ in plan[:3]]
    assert first == list(OBJECT_CLICKS[0]) and [last for *_, last in plan] == [False, False, True] * 2 + [
        False, False]  # fmt: skip
    timings = [
        ClickTiming(model_ms=100.0 + i, press_to_paint_ms=110.0 + 2 * i, release_to_paint_ms=105.0,
                    press_to_predict_ms=3.0, handoff_ms=4.0, shown_to_paint_ms=2.0, stall_click_ms=8.0,
                    stall_predict_ms=7.0, paint_covers_click=i != 3)
        for i in range(11)
    ]  # fmt: skip
    opens = [VolumeOpenTiming(seconds=1.5, stall_ms=12.0), VolumeOpenTiming(seconds=3.5, stall_ms=70.0)]
    table = format_table(timings, [2.5, 2.0], "# header", "engine fake", opens)
    lines = table.splitlines()
    assert lines[0] == "# header" and "11 clicks" in lines[1] and "clicked point: 10/11" in lines[1]
    assert "| model latency: predict() | 105.0 | 109.0 | 110.0 |  |  |" in lines
    assert "| press → painted minus model latency | 15.0 | 19.0 | 20.0 | ≤ 30 | yes |" in lines
    assert "| event-loop stall, press → painted | 8.0 | 8.0 | 8.0 | ≤ 50 | yes |" in lines
    assert lines[-3] == "| load_dicom (s) | 2.50, 2.00 | 2.00 | ≤ 3 s | yes |"
    assert lines[-2].endswith("| 1.50, 3.50 | 1.50 | ≤ 3 s | yes |")
    assert lines[-1].endswith("| 12, 70 | 12 | ≤ 50 ms | no (worst run) |")


def test_measure_image_open_times_the_window_and_the_synchronous_decode(qtbot, tmp_path, messages) -> None:
    image = tmp_path / "sample.jpg"
    shutil.copy(SAMPLE, image)
    window, _ = open_window(image, tmp_path, engines={"sleepy": sleepy_disks}, timeout_s=30)
    qtbot.addWidget(window)
    big = write_large_photo(tmp_path / "large.jpg", side=1024)
    try:
        timing = measure_image_open(window, big)
        assert window.doc.path == big and window.canvas.image_size == (1024, 1024)
        assert window.canvas.overlay_item.pixmap().isNull()  # nothing annotated: no overlay rendered
    finally:
        close_window(window)
    assert timing.seconds > 0 and timing.synchronous_ms > 0
    assert math.isfinite(timing.stall_ms) and timing.stall_ms < timing.seconds * 1000
