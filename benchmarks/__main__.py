"""`python -m benchmarks [--events N] [--out FILE] [--markdown FILE]`: what `make bench` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.run import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to replay for P5")
    parser.add_argument("--out", default="bench-results.json", help="JSON results file")
    parser.add_argument("--markdown", default="docs/benchmarks.md", help="Markdown table")
    args = parser.parse_args(argv)
    run(args.events, Path(args.out), Path(args.markdown))


if __name__ == "__main__":
    main()
