"""Where the time of a training step goes: scene making, click simulation, forward, backward.

Used by :mod:`training.trainer` and :mod:`training.gpu_job` (``job.json``'s ``step_shares``) and by the
step benchmark (``python -m training.benchmarks.train_step``).
"""

from __future__ import annotations

import time

import torch


class StepTimer:
    """Wall time of the parts of a step, measured on every ``every``-th step (synchronising the device
    there only, so that the other steps run without waits)."""

    # click_rule: sampling the first clicks and the correction clicks' placement; click_forward: the
    # no-grad passes of iterative training whose predictions the correction clicks answer
    PARTS = ("scenes", "click_rule", "click_forward", "forward", "backward")

    def __init__(self, device: torch.device | str = "cpu", every: int = 20) -> None:
        """``every`` = 0: never measure (the default of a trainer that is not being benchmarked)."""
        self.device, self.every = torch.device(device), every
        self.totals = dict.fromkeys(self.PARTS, 0.0)
        self.active = False
        self._last = 0.0

    def start(self, step: int) -> None:
        # the second step first: the first one warms up
        self.active = self.every > 0 and step % self.every == min(1, self.every - 1)
        if self.active:
            self._sync()
            self._last = time.perf_counter()

    def lap(self, part: str) -> None:
        if self.active:
            self._sync()
            now = time.perf_counter()
            self.totals[part] += now - self._last
            self._last = now

    def shares(self) -> dict[str, float]:
        total = sum(self.totals.values())
        return {k: round(v / total, 3) if total else 0.0 for k, v in self.totals.items()}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds(self) -> dict[str, float]:
        """Seconds measured per part so far."""
        return dict(self.totals)
