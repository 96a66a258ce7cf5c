"""`tally chaos stack`: a thin entry point to the top-level chaos/ package (the real-stack
scenarios R1-R8, a source checkout only), and the suite's checks on made-up answers: each
one finds the fault it is there to find."""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.cli.main import app
from chaos import r1_quota, r2_triple, run
from chaos.result import Result
from chaos.verify import stream_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def logs_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The suite empties its log folder when it starts: not the real one here."""
    monkeypatch.setattr(run, "LOGS", tmp_path / "logs")


def test_stack_runs_the_chosen_scenarios_and_writes_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[tuple[str, bool]] = []

    def fake(self: run.Scenario, quick: bool) -> Result:
        ran.append((self.module, quick))
        return Result("R3", "kills", {"kills": 2}, ["2 events missing"] if quick else [])

    monkeypatch.setattr(run.Scenario, "run", fake)
    out = tmp_path / "stack.json"
    args = ["chaos", "stack", "--scenario", "r3", "--json", str(out), "--quick"]
    result = CliRunner().invoke(app, args)
    assert ran == [("r3_kills", True)]
    assert result.exit_code == 1, result.output
    assert "R3 FAIL kills" in result.output and "2 events missing" in result.output
    written = json.loads(out.read_text())
    assert written["size"] == "quick" and written["passed"] is False
    assert written["scenarios"][0]["figures"] == {"kills": 2}
    again = CliRunner().invoke(app, ["chaos", "stack", "--scenario", "R3", "--json", str(out)])
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["passed"] is True


def test_an_unknown_scenario_is_refused() -> None:
    result = CliRunner().invoke(app, ["chaos", "stack", "--scenario", "R11"])
    assert result.exit_code == 2 and "R11" in result.output


def test_a_scenario_that_raises_fails_and_the_next_still_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fake(self: run.Scenario, quick: bool) -> Result:
        if self.module == "r1_quota":
            raise RuntimeError("tally serve exited at start")
        return Result("R2", "triple")

    monkeypatch.setattr(run.Scenario, "run", fake)
    lines: list[str] = []
    assert not run.run(["R1", "R2"], tmp_path / "s.json", quick=True, echo=lines.append)
    assert lines[0].startswith("R1 FAIL") and "tally serve exited" in lines[1]
    assert "var/chaos/logs/" in lines[2]
    assert lines[3].startswith("R2 PASS") and lines[4].startswith("chaos stack: 1/2 passed")


def test_stack_without_the_chaos_package_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chaos", None)  # as in a wheel: not importable
    monkeypatch.delitem(sys.modules, "chaos.run", raising=False)
    result = CliRunner().invoke(app, ["chaos", "stack"])
    assert result.exit_code == 2
    assert "needs the chaos/ package of a source checkout" in result.output


def test_the_wheel_leaves_the_chaos_suite_out_and_mypy_checks_it() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "chaos" not in wheel["packages"] and "chaos" in wheel["exclude"]
    assert "chaos" in config["tool"]["mypy"]["packages"]
    assert set(run.SCENARIOS) == {f"R{n}" for n in [*range(1, 9), 10]}


def r1_verdict(outcomes: dict[str, int], limit: int, used: int) -> Result:
    result = Result("R1", "quota")
    r1_quota.judge(result, Counter(outcomes), sum(outcomes.values()), limit, used)
    return result


def test_r1_finds_a_quota_over_its_limit_and_lost_attempts() -> None:
    assert r1_verdict({"accepted": 5, "refused": 5}, limit=5, used=5).passed
    over = r1_verdict({"accepted": 6, "refused": 4}, limit=5, used=6)
    assert any("exceeds the limit" in p for p in over.problems)
    lost = r1_verdict({"accepted": 5, "refused": 4, "error 503": 1}, limit=5, used=5)
    assert any("neither accepted nor refused" in p for p in lost.problems)


def test_r2_finds_a_delivery_counted_twice() -> None:
    once: list[tuple[Any, str]] = [(("usage", 0, 2), "counted"), (("usage", 0, 2), "duplicate")]
    result = Result("R2", "triple")
    r2_triple.judge(result, [*once, (("usage", 0, 2), "duplicate")], expected=2, used=2)
    assert result.passed
    twice = Result("R2", "triple")
    r2_triple.judge(twice, [*once, (("usage", 0, 2), "counted")], expected=2, used=4)
    assert len(twice.problems) == 2


def test_the_stream_check_finds_missing_doubled_unknown_and_disordered_messages() -> None:
    events = [("a", 1), ("b", 2), ("c", 3)]
    assert set(stream_problems(events, events).values()) == {0}
    found = stream_problems(events, [("a", 1), ("c", 3), ("c", 3), ("x", 2)])
    assert found == {"missing": 1, "doubled": 1, "unknown": 1, "out_of_order": 1}
