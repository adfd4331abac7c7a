"""Benchmark scripts and test-data writers of the app (not imported by the product).

``gui`` — click-to-paint latency and event-loop stalls through the real window; ``volume_open`` —
opening a synthetic CT series; ``dicom_write`` — writes DICOM series for tests and benchmarks.
"""
