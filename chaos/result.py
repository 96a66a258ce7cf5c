"""What a scenario reports: its figures, its problems (none: PASS) and how long it took;
and the helpers the scenarios share to put load on the stack."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Result:
    """One scenario's verdict: PASS when it found no problem."""

    scenario: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def check(self, holds: bool, problem: str) -> None:
        """Record `problem` unless `holds`."""
        if not holds:
            self.problems.append(problem)

    def line(self) -> str:
        figures = " ".join(f"{k}={v}" for k, v in self.figures.items())
        verdict = "PASS" if self.passed else "FAIL"
        return f"{self.scenario} {verdict} {self.title} ({self.seconds:.0f} s): {figures}"

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "figures": self.figures,
            "problems": self.problems,
        }


def in_parallel(
    clients: Callable[[], httpx.Client],
    workers: int,
    items: Sequence[T],
    call: Callable[[httpx.Client, T], R],
) -> list[R]:
    """`call(client, item)` for every item, by `workers` threads each with a client of its
    own taking the next item; the answers in item order."""
    answers: list[Any] = [None] * len(items)
    cursor = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        with clients() as client:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                answers[index] = call(client, items[index])

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """(status, JSON body or text); status 0 when the request itself failed."""
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as error:
        return 0, repr(error)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text
