"""Benchmark results: each figure beside its raw baseline, written as JSON and Markdown."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured target (see ../shared/spec/TARGETS.md) and its baseline in the same run."""

    key: str
    what: str
    value: float
    unit: str
    target: str
    baseline: float | None = None
    baseline_what: str = ""
    ratio_target: float | None = None
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    size: str = ""
    """The size measured at ("full", or "quick: …" for `make bench QUICK=1`)."""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the figure reaches its TARGETS.md limit and its ratio target (None: the
        figure has neither, e.g. not measured)."""
        if self.size.startswith("quick") and self.key.split("-")[0] in SIZED:
            return False  # its target names a size the quick run does not reach
        checks: list[bool] = []
        limit = limit_of(self.key)
        if limit is not None and self.unit != NOT_MEASURED:
            at_most, bound = limit
            checks.append(self.value <= bound if at_most else self.value >= bound)
        if self.ratio_target is not None and self.ratio is not None:
            checks.append(self.ratio >= self.ratio_target)
        if self.key in GROWTH and self.ratio is not None:
            at_most, bound = GROWTH[self.key]
            checks.append(self.ratio <= bound if at_most else self.ratio >= bound)
        return all(checks) if checks else None

    @property
    def verdict(self) -> str:
        met = self.met
        return "see target" if met is None else "meets" if met else "below"


NOT_MEASURED = "(not measured)"

SIZED = frozenset({"P5", "P6", "P7", "P10"})
"""Figures whose TARGETS.md target names the data it holds at (1,000,000 events, 10,000
subscriptions, a 100,000-event history, 10x the data): never met by a quick run."""

# TARGETS.md limits on each figure's value, in the unit its step reports: (at most?, bound).
# Ratio targets (against the same run's baseline) are the figures' own `ratio_target`.
LIMITS: dict[str, tuple[bool, float]] = {
    "P1": (False, 5_000),  # commands/s
    "P2": (False, 100_000),  # events/s
    "P3-inproc": (True, 10),  # µs p99
    "P3-http": (True, 1),  # ms p99
    "P4": (True, 50),  # ms p99
    "P5": (False, 50_000),  # events/s
    "P6-run": (True, 10_000),  # ms
    "P6-invoice": (True, 20),  # ms p99
    "P7": (True, 5),  # ms p99
    "P8": (True, 400),  # MB
    "P9": (True, 1_500),  # ms
    "P11": (True, 100),  # ms p99
}


# P10: the figure at 10x the data over the same figure at 1x (a p99 may grow by 1.2x; a rate
# may fall to 1 / 1.3 of itself).
GROWTH: dict[str, tuple[bool, float]] = {
    "P10-P3": (True, 1.2),
    "P10-P5": (False, 1 / 1.3),
    "P10-P6": (False, 1 / 1.3),
}


def limit_of(key: str) -> tuple[bool, float] | None:
    """The limit of a figure id: its own, or its family's (P1-dedupe is a P1)."""
    return LIMITS.get(key, LIMITS.get(key.split("-")[0]))


def write(figures: list[Figure], json_path: Path, markdown_path: Path) -> None:
    meta = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps([as_json(f, meta) for f in figures], indent=2))
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(markdown_path.read_text()) if markdown_path.exists() else ""
    markdown_path.write_text(markdown(figures, meta) + kept)


def as_json(figure: Figure, meta: dict[str, str]) -> dict[str, Any]:
    """One figure as TARGETS.md names it: id, what, value, unit, baseline, ratio, target, met,
    size, and the rest (notes, extra figures, when and where it was measured) beside them."""
    row = asdict(figure)
    row["id"] = row.pop("key")
    return {**row, "ratio": figure.ratio, "met": figure.met, "verdict": figure.verdict, **meta}


def kept_sections(text: str) -> str:
    """The hand-written part of the page: from its first `## ` heading on (the generated part,
    the title, table and notes, has none), so a run rewrites the figures and keeps the rest."""
    start = text.find("\n## ")
    return "" if start < 0 else "\n" + text[start + 1 :]


def markdown(figures: list[Figure], meta: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {meta['measured_at']} by `make bench` on {meta['machine']}, "
        f"Python {meta['python']}. Absolute figures drift on shared machines; each is printed "
        "beside a raw baseline measured in the same run, and the ratio is what counts.",
        "",
        "| # | what | result | target | baseline (same run) | ratio | verdict | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = f"{_number(f.baseline)} {f.baseline_what}" if f.baseline else "—"
        wanted = _wanted_ratio(f)
        ratio = f"{f.ratio:.2f}× ({wanted})" if f.ratio is not None else "—"
        lines.append(
            f"| {f.key} | {f.what} | {f.value:,.1f} {f.unit} | {f.target} | {base} | {ratio} "
            f"| {f.verdict} | {f.size or 'full'} |"
        )
    notes = [f"- **{f.key}**: {f.notes}" for f in figures if f.notes]
    return "\n".join([*lines, "", *notes, ""])


def _wanted_ratio(figure: Figure) -> str:
    if figure.key in GROWTH:
        at_most, bound = GROWTH[figure.key]
        return f"{'≤' if at_most else '≥'} {bound:.2f}×"
    if figure.ratio_target is not None:
        return f"≥ {figure.ratio_target}×"
    return "no ratio target"


def _number(value: float) -> str:
    """Large figures without decimals, small ones with two (a 0.4 s baseline is not 0)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
