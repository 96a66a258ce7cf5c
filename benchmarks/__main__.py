"""`python -m benchmarks [--events N] [--quick] [--out FILE] [--markdown FILE]`: what `make
bench` runs (`make bench QUICK=1` adds --quick)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.run import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to replay for P5")
    parser.add_argument("--out", default="docs/benchmarks.json", help="JSON results file")
    parser.add_argument(
        "--quick", action="store_true", help="every figure at a smaller size (about 2 minutes)"
    )
    parser.add_argument("--markdown", default="docs/benchmarks.md", help="Markdown table")
    args = parser.parse_args(argv)
    run(args.events, Path(args.out), Path(args.markdown), quick=args.quick)


if __name__ == "__main__":
    main()
