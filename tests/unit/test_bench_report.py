"""benchmarks/report.py: a run rewrites the figures of docs/benchmarks.md and keeps the
hand-written sections after them (from the first `## ` heading on)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import Figure, write

FIGURE = Figure(
    key="P2",
    what="usage ingest",
    value=5000.0,
    unit="events/s",
    target="≥ 100,000 events/s",
    baseline=100_000.0,
    baseline_what="rows/s COPY",
    ratio_target=0.35,
    notes="durability check passed",
)


def test_a_run_rewrites_the_figures_and_keeps_the_hand_written_sections(tmp_path: Path) -> None:
    page, results = tmp_path / "benchmarks.md", tmp_path / "r.json"
    page.write_text("# Benchmarks\n\n| old | table |\n\n- **P9**: old\n\n## Notes\n\nkept\n")
    write([FIGURE], results, page)
    text = page.read_text()
    assert "| old | table |" not in text and "**P9**" not in text
    assert "| P2 | usage ingest | 5,000.0 events/s |" in text
    assert "0.05× (≥ 0.35×) | below |" in text
    assert text.endswith("\n## Notes\n\nkept\n")
    assert text.count("## Notes") == 1
    write([FIGURE], results, page)  # again: nothing doubled
    assert page.read_text() == text
    [row] = json.loads(results.read_text())  # TARGETS.md: a list of figures
    assert row["id"] == "P2" and row["met"] is False and row["verdict"] == "below"
    assert {"what", "value", "unit", "baseline", "ratio", "target", "size"} <= set(row)


def test_met_holds_a_figure_to_its_targets_md_limit_and_its_ratio_target() -> None:
    fast = Figure(key="P3-inproc", what="check", value=6.0, unit="µs p99", target="≤ 10 µs")
    slow = Figure(key="P3-inproc", what="check", value=12.0, unit="µs p99", target="≤ 10 µs")
    assert (fast.met, slow.met) == (True, False)
    dedupe = Figure(key="P1-dedupe", what="bus", value=6_000, unit="commands/s", target="")
    assert dedupe.met is True  # a P1 by its family's limit; no baseline, so no ratio asked
    rate_only = Figure(key="P2", what="ingest", value=120_000, unit="events/s", target="")
    behind = Figure(
        key="P2",
        what="ingest",
        value=120_000,
        unit="events/s",
        target="",
        baseline=400_000,
        ratio_target=0.35,
    )
    assert (rate_only.met, behind.met) == (True, False)  # fast enough, but 0.3x the COPY
    assert Figure(key="P10-P5", what="growth", value=1.0, unit="×", target="").met is None
    small_run = Figure(key="P6-run", what="run", value=900.0, unit="ms", target="≤ 10 s")
    assert small_run.met is True
    small_run.size = "quick: 500 subscriptions"
    assert small_run.met is False  # the target is for 10,000 subscriptions


def test_a_new_page_has_only_the_figures(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    write([FIGURE], tmp_path / "r.json", page)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n") and "\n## " not in text
