"""`tally bench` / `make bench`: measure the TARGETS.md figures this build supports."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adapters.bench import replay_rate
from adapters.bench.report import Figure, write

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def run(events: int, out: Path, markdown: Path) -> list[Figure]:
    console = Console()
    pg_url = os.environ.get("TALLY_BENCH_DATABASE_URL", DEFAULT_PG)
    figures = [replay_rate.measure(pg_url, events, console.print)]
    write(figures, out, markdown)
    table = Table("#", "what", "result", "target", "baseline", "ratio", "verdict")
    for f in figures:
        table.add_row(
            f.key,
            f.what,
            f"{f.value:,.0f} {f.unit}",
            f.target,
            f"{f.baseline:,.0f} {f.baseline_what}" if f.baseline else "—",
            f"{f.ratio:.2f}×" if f.ratio is not None else "—",
            f.verdict,
        )
    console.print(table)
    console.print(f"wrote {out} and {markdown}")
    return figures
