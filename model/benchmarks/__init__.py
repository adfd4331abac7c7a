"""Benchmark scripts of the model package (not imported by the product).

``latency`` — per-click latency of the zoo and of the default network against the straightforward
implementation (``baseline_segformer``, the original code's style) in the same run;
``engines`` — NoC and latency of the classical engines and the shipped network on the evaluation sets.
"""
