"""`tally bench`: a thin entry point to the top-level benchmarks/ package, which ships only in
a source checkout (not in the wheel); without it the command says so and exits 2."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_the_benchmarks_package_with_its_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import benchmarks.run

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(benchmarks.run, "run", lambda *args, quick: calls.append((*args, quick)))
    out, markdown = tmp_path / "r.json", tmp_path / "b.md"
    options = ["--events", "500", "--out", str(out), "--markdown", str(markdown)]
    result = CliRunner().invoke(app, ["bench", *options])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["bench", *options, "--quick"])
    assert result.exit_code == 0, result.output
    assert calls == [(500, out, markdown, False), (500, out, markdown, True)]


def test_bench_without_the_benchmarks_package_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # as in a wheel: not importable
    monkeypatch.delitem(sys.modules, "benchmarks.run", raising=False)
    result = CliRunner().invoke(app, ["bench"])
    assert result.exit_code == 2
    assert "needs the benchmarks/ package of a source checkout" in result.output
    assert "make bench" in result.output


def test_a_missing_dependency_inside_the_benchmarks_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = types.ModuleType("benchmarks")

    def missing(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'nats'", name="nats")

    broken.__getattr__ = missing  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "benchmarks", broken)
    monkeypatch.delitem(sys.modules, "benchmarks.run", raising=False)
    result = CliRunner().invoke(app, ["bench"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert result.exception.name == "nats"


def test_the_wheel_leaves_the_benchmarks_out_and_mypy_checks_them() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "benchmarks" not in wheel["packages"]
    assert "benchmarks" in wheel["exclude"]
    assert "benchmarks" in config["tool"]["mypy"]["packages"]
    assert not (ROOT / "adapters" / "bench").exists()
    assert (ROOT / "benchmarks" / "run.py").exists()
