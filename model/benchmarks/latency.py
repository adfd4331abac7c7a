"""Per-click latency: ``python -m model.benchmarks.latency [--section zoo|speed|default|first|all]``.

``zoo``: the full predictor (clicks -> probability map at full resolution, ZoomIn and flip off so the
input size is what the row says) for each architecture at a 400×400 and an 800×600 image; median
and p90 over ``--clicks`` clicks after ``--warmup`` clicks, random weights.

``speed``: the same SegFormer weights run by a straightforward eager fp32 implementation in the
original code's style (:mod:`model.benchmarks.baseline_segformer`) and by ours (fp32, and bf16 autocast where
the CPU supports it), 400×400, 6 input channels; plus the share of a predictor call spent outside
the network (click maps, ZoomIn, resizes).

``default``: the bundled trained network through the predictor as the app runs it, fp32 at torch's
default thread count against each (precision, threads) candidate the app measures at load time.

``first``: the bundled network's first click on each VOC + ARC object (the protocol's click), with the
original ZoomIn (the first click unzoomed) against the app's (a small object's first click refined by a
second, zoomed pass: :func:`model.predictor.interactive_zoom_in`); the best of three per object.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from model.build import build_model
from model.clicks import Click, clicks_to_points
from model.predictor import Predictor, cpu_has_native_bf16

ZOO_MODELS = (
    "segformer_b0",
    "segformer_b2",
    "segformer_b3",
    "segformer_b5",
    "hrnet18_ocr64",
    "hrnet32_ocr128",
    "swin_base",
    "hrformer_small",
    "hrformer_base",
)
SPEED_MODELS = ("segformer_b0", "segformer_b2", "segformer_b5")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header(device: torch.device) -> str:
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"# device {device}{gpu}; CPU {cpu_model()}; {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}; torch {torch.__version__}; "
        f"python {platform.python_version()}"
    )


def random_clicks(height: int, width: int, count: int, seed: int = 0) -> list[Click]:
    rng = np.random.default_rng(seed)
    return [
        Click(float(rng.integers(0, height)), float(rng.integers(0, width)), bool(i % 3 != 2), i)
        for i in range(count)
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], object], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds of ``fn(i)`` for i in warmup..warmup+repeats-1 (after ``warmup`` untimed calls)."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(warmup, warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        fn(i)
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def chained_calls(predictor: Predictor, clicks: list[Click]) -> Callable[[int], object]:
    """``fn(i)``: predict ``clicks[: i + 1]`` continuing from the previous call's state (as the app does
    after each click; call it with i = 0, 1, 2, ...)."""
    state = None

    def call(i: int) -> object:
        nonlocal state
        prediction = predictor.predict(clicks[: i + 1], state)
        state = prediction.state
        return prediction

    return call


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def bench_zoo(models: list[str], sizes: list[tuple[int, int]], args: argparse.Namespace, device) -> None:
    print("\n## Per-click latency of the full predictor (random weights, ZoomIn and flip off)\n")
    print("| model | params (M) | image | median ms | p90 ms |")
    print("|---|---:|---|---:|---:|")
    for name in models:
        model = build_model(name).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for height, width in sizes:
            predictor = Predictor(model, device=device, zoom_in=None, with_flip=False, autocast=args.autocast)
            rng = np.random.default_rng(1)
            predictor.set_image(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
            clicks = random_clicks(height, width, args.warmup + args.clicks)
            times = time_calls(chained_calls(predictor, clicks), args.warmup, args.clicks, device)
            median, slow = statistics.median(times), p90(times)
            print(f"| {name} | {params:.1f} | {width}×{height} | {median:.0f} | {slow:.0f} |", flush=True)
        del model


def bench_speed(models: list[str], args: argparse.Namespace, device) -> None:
    from model.benchmarks.baseline_segformer import straightforward_copy

    size = 400
    use_bf16 = device.type == "cuda" or cpu_has_native_bf16()
    print(f"\n## Straightforward vs ours, network forward, 6 channels, {size}×{size}, random weights\n")
    cols = "| model | straightforward fp32 ms | ours fp32 ms | ratio |"
    sep = "|---|---:|---:|---:|"
    if use_bf16:
        cols += " ours bf16 ms | ratio | bf16 IoU vs fp32 (random weights) |"
        sep += "---:|---:|---:|"
    print(cols + " predictor overhead |")
    print(sep + "---:|")
    rng = np.random.default_rng(2)
    image = torch.from_numpy(rng.random((1, 4, size, size), dtype=np.float32)).to(device)
    points = clicks_to_points([random_clicks(size, size, 5)], device=device)
    for name in models:
        ours = build_model(name, with_prev_mask=True).eval().to(device)
        base = straightforward_copy(ours).to(device)
        with torch.inference_mode():
            ref = base(image, points)["instances"]
            assert torch.allclose(ours(image, points)["instances"], ref, atol=1e-3), f"{name}: twins disagree"

            def run(net, dtype=None):
                def call(_i: int) -> None:
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        net(image, points)

                return statistics.median(time_calls(call, args.warmup, args.clicks, device))

            t_base = run(base)
            t_ours = run(ours)
            row = f"| {name} | {t_base:.0f} | {t_ours:.0f} | {t_ours / t_base:.2f} |"
            best = t_ours
            if use_bf16:
                t_bf16 = run(ours, torch.bfloat16)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    low = ours(image, points)["instances"].float()
                a, b = low > 0, ref > 0
                iou = float((a & b).sum()) / max(1.0, float((a | b).sum()))
                row += f" {t_bf16:.0f} | {t_bf16 / t_base:.2f} | {iou:.4f} |"
                best = min(best, t_bf16)
        autocast = "bf16" if use_bf16 and best < t_ours else None
        overhead = predictor_overhead(ours, device, size, autocast, args)
        print(row + f" {overhead * 100:.1f}% |", flush=True)


def predictor_overhead(model, device, size: int, autocast: str | None, args: argparse.Namespace) -> float:
    """Share of a predictor call (ZoomIn on, as in use) spent outside the network forward."""
    predictor = Predictor(model, device=device, zoom_in=True, with_flip=False, autocast=autocast)
    rng = np.random.default_rng(3)
    predictor.set_image(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    spent = {"net": 0.0}
    forward = model.forward

    def timed_forward(*a, **k):
        _sync(device)
        start = time.perf_counter()
        out = forward(*a, **k)
        _sync(device)
        spent["net"] += time.perf_counter() - start
        return out

    model.forward = timed_forward
    try:
        call = chained_calls(predictor, random_clicks(size, size, args.warmup + args.clicks, seed=4))
        for i in range(args.warmup):
            call(i)
        spent["net"] = 0.0
        total = sum(time_calls(lambda i: call(args.warmup + i), 0, args.clicks, device)) / 1000
    finally:
        del model.forward
    return max(0.0, 1 - spent["net"] / total)


def bench_default(args: argparse.Namespace, device: torch.device) -> None:
    """The bundled default network as the app runs it (ZoomIn and flip on), 400x400, per click:
    fp32 at torch's default threads (the straightforward way) against each measured candidate."""
    from model.checkpoint import load_checkpoint
    from model.runtime_tuning import candidate_settings
    from resources import DEFAULT_MODEL, bundled_model

    path = bundled_model()
    if path is None:
        print(f"\n(no bundled model at {DEFAULT_MODEL})")
        return
    model = load_checkpoint(path, device).eval()
    size = 400
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    clicks = random_clicks(size, size, args.warmup + args.clicks)
    title = f"Bundled network {path.name} ({model.arch}), per click, {size}×{size}, ZoomIn + flip"
    print(f"\n## {title}\n")
    print("| precision | threads | layout | median ms | p90 ms |")
    print("|---|---:|---|---:|---:|")
    default_threads = torch.get_num_threads()
    rows = [(None, default_threads)] + [c for c in candidate_settings() if c != (None, default_threads)]
    for precision, threads in rows:
        for channels_last in (False, True):
            torch.set_num_threads(threads)
            predictor = Predictor(model, device=device, autocast=precision, channels_last=channels_last)
            predictor.set_image(image)
            times = time_calls(chained_calls(predictor, clicks), args.warmup, args.clicks, device)
            label, layout = precision or "fp32", "channels-last" if channels_last else "NCHW"
            print(f"| {label} | {threads} | {layout} | {statistics.median(times):.0f} | {p90(times):.0f} |",
                  flush=True)  # fmt: skip
            model.to(memory_format=torch.contiguous_format)
    torch.set_num_threads(default_threads)


def bench_first_click(args: argparse.Namespace, device: torch.device) -> None:
    """First-click latency of the bundled network on the VOC + ARC objects: original ZoomIn against the
    app's refined first click, with the share of first clicks that ran the second pass."""
    from model.checkpoint import load_checkpoint
    from model.evaluation.clicker import Clicker
    from model.evaluation.samples import arc_samples, voc_samples
    from model.predictor import INTERACTIVE_MAX_SIZE, interactive_zoom_in
    from model.transforms import ZoomIn
    from resources import DEFAULT_MODEL, bundled_model

    path = bundled_model()
    if path is None:
        print(f"\n(no bundled model at {DEFAULT_MODEL})")
        return
    model = load_checkpoint(path, device).eval()
    samples = voc_samples() + arc_samples()
    print(f"\n## First click of {path.name} on {len(samples)} VOC + ARC objects (best of 3 per object)\n")
    print("| ZoomIn | median ms | p90 ms | mean ms | first clicks zoomed |")
    print("|---|---:|---:|---:|---:|")
    variants = (
        ("original (first click unzoomed)", ZoomIn()),
        ("app (small objects refined)", interactive_zoom_in(model)),
    )
    for label, zoom in variants:
        predictor = Predictor(model, device=device, zoom_in=zoom, max_size=INTERACTIVE_MAX_SIZE)
        times, zoomed = [], 0
        for sample in samples:
            predictor.set_image(sample.image)
            clicker = Clicker(sample.gt_mask())
            clicker.make_next_click(np.zeros(sample.mask.shape, dtype=bool))
            first_click = functools.partial(predictor.predict, list(clicker.clicks))
            times.append(min(time_calls(lambda _, call=first_click: call(), 1, 3, device)))
            zoomed += first_click().state.zoom_box is not None
        median, mean = statistics.median(times), statistics.mean(times)
        print(f"| {label} | {median:.0f} | {p90(times):.0f} | {mean:.0f} | {zoomed} / {len(samples)} |",
              flush=True)  # fmt: skip


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=("zoo", "speed", "default", "first", "all"), default="all")
    parser.add_argument("--models", default=",".join(ZOO_MODELS))
    parser.add_argument("--speed-models", default=",".join(SPEED_MODELS))
    parser.add_argument("--sizes", default="400x400,800x600", help="WxH list")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--autocast", choices=("fp16", "bf16"), default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(machine_header(device))
    print(f"# python -m model.benchmarks.latency {' '.join(argv) if argv else ''}".rstrip())
    if args.section in ("zoo", "all"):
        bench_zoo(args.models.split(","), [parse_size(s) for s in args.sizes.split(",")], args, device)
    if args.section in ("speed", "all"):
        bench_speed(args.speed_models.split(","), args, device)
    if args.section in ("default", "all"):
        bench_default(args, device)
    if args.section in ("first", "all"):
        bench_first_click(args, device)


if __name__ == "__main__":
    main()
