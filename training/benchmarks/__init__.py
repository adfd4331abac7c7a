"""Benchmarks of the training code (kept out of the product: nothing outside this package imports it)."""
