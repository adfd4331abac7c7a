"""What a fine-tuning job tells whoever started it, one JSON object per line (``--events`` on stdout),
the names of its result files and its before/after table.

Torch-free, so the app can follow a job it runs as a separate process without importing the training
stack. Kinds: ``phase`` (a step such as "measuring the base model"), ``step`` (samples seen,
loss, elapsed and remaining seconds), ``done`` (the result: ``finetune.json``'s contents) and
``error`` (one message).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

EVENT_PREFIX = "isegformer-finetune "
RESULT_FILE = "finetune.json"  # in the output folder: the result below
CARD_FILE = "finetune.md"  # the model card


@dataclass(frozen=True)
class FinetuneEvent:
    kind: str  # phase | step | done | error
    message: str = ""
    samples: int = 0
    steps: int = 0
    loss: float = float("nan")
    elapsed_s: float = 0.0
    remaining_s: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> str:
        """One line (prefixed, so other output on the same stream is told apart)."""
        return EVENT_PREFIX + json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_line(cls, line: str) -> FinetuneEvent | None:
        """The event of a line written by :meth:`to_line`, or None for any other line."""
        line = line.strip()
        if not line.startswith(EVENT_PREFIX):
            return None
        try:
            values = json.loads(line[len(EVENT_PREFIX) :])
            return cls(**values)
        except (ValueError, TypeError):
            return None


METRICS = (("noc85", "NoC@85"), ("noc90", "NoC@90"), ("miou@1", "mIoU@1"), ("miou@3", "mIoU@3"),
           ("miou@5", "mIoU@5"))  # fmt: skip


def comparison_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, before, after) rows of a result, for a table (NoC lower is better, mIoU higher)."""
    rows = [("held-out objects", str(int(result["before"]["objects"])), str(int(result["after"]["objects"])))]
    for key, title in METRICS:
        if key in result["before"]:
            digits = 2 if key.startswith("noc") else 3
            rows.append((title, f"{result['before'][key]:.{digits}f}", f"{result['after'][key]:.{digits}f}"))
    return rows
