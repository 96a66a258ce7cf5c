"""The trace: one line per step (step, simulated time, command, outcome), the same bytes for
the same seed. Ids never appear as they are (some are random, e.g. event ids): each is named
by its kind and the order in which the simulation first met it (`inv7`, `sub3`)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from uuid import UUID

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


class Labels:
    """Stable names for ids: the n-th id of a kind seen gets `<kind><n>`."""

    def __init__(self) -> None:
        self._names: dict[UUID, str] = {}
        self._counts: Counter[str] = Counter()

    def name(self, kind: str, value: UUID | str | None) -> str:
        if value is None:
            return "-"
        key = value if isinstance(value, UUID) else UUID(str(value))
        if key not in self._names:
            self._counts[kind] += 1
            self._names[key] = f"{kind}{self._counts[kind]}"
        return self._names[key]

    def scrub(self, text: str) -> str:
        """The text with every id named (and no memory address): fit for the trace."""
        named = UUID_TEXT.sub(lambda match: self.name("id", match.group(0)), text)
        return ADDRESS.sub("0x…", named)


class Trace:
    """The lines written so far; `write` saves them, newline-terminated, as UTF-8."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.step = 0

    def log(self, at: datetime, command: str, outcome: str) -> None:
        self.lines.append(f"{self.step:05d} {at:%Y-%m-%dT%H:%M:%S} {command} -> {outcome}")

    def note(self, text: str) -> None:
        """A line that is not a step (a fault's detail, a checkpoint)."""
        self.lines.append(f"{self.step:05d} {text}")

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.text().encode("utf-8"))
