"""One line at the end of a test run naming what was skipped and why (``pytest -q`` only counts them)."""

from __future__ import annotations

from collections import Counter


def skip_reasons(reports) -> Counter:
    """How many tests were skipped for each reason."""
    reasons: Counter = Counter()
    for report in reports:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    return reasons


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    reasons = skip_reasons(terminalreporter.stats.get("skipped", []))
    if reasons:
        text = "; ".join(f"{count} skipped: {reason}" for reason, count in reasons.most_common())
        terminalreporter.write_line(f"SKIPPED — {text}", yellow=True)
