"""Benchmark results: each figure beside its raw baseline, written as JSON and Markdown."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path


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

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.ratio_target is not None and self.ratio is not None:
            return "meets" if self.ratio >= self.ratio_target else "below"
        return "see target"


def write(figures: list[Figure], json_path: Path, markdown_path: Path) -> None:
    meta = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }
    rows = [{**asdict(f), "ratio": f.ratio, "verdict": f.verdict} for f in figures]
    json_path.write_text(json.dumps({"meta": meta, "figures": rows}, indent=2))
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(markdown_path.read_text()) if markdown_path.exists() else ""
    markdown_path.write_text(markdown(figures, meta) + kept)


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
        "| # | what | result | target | baseline (same run) | ratio | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = f"{_number(f.baseline)} {f.baseline_what}" if f.baseline else "—"
        wanted = f"≥ {f.ratio_target}×" if f.ratio_target is not None else "no ratio target"
        ratio = f"{f.ratio:.2f}× ({wanted})" if f.ratio is not None else "—"
        lines.append(
            f"| {f.key} | {f.what} | {f.value:,.1f} {f.unit} | {f.target} | {base} | {ratio} "
            f"| {f.verdict} |"
        )
    notes = [f"- **{f.key}**: {f.notes}" for f in figures if f.notes]
    return "\n".join([*lines, "", *notes, ""])


def _number(value: float) -> str:
    """Large figures without decimals, small ones with two (a 0.4 s baseline is not 0)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
