"""Every process starts from adapters/entrypoints.py: the CLI's serve and worker commands
import their process from there; a worker runs until SIGTERM and closes its system."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
from pathlib import Path

import pytest

from adapters import entrypoints

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = {
    "serve",
    "run_relay",
    "run_projector",
    "run_alerts",
    "run_plugins",
    "run_mailer",
    "run_command_bus",
    "run_sealer",
    "run_stripe",
}


def test_the_cli_starts_every_process_from_the_entry_points() -> None:
    tree = ast.parse((ROOT / "adapters/cli/main.py").read_text(encoding="utf-8"))
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.name in PROCESSES or alias.name.startswith("run_"):
                    imported[alias.name] = node.module
    assert set(imported) >= PROCESSES
    assert {name: module for name, module in imported.items() if name in PROCESSES} == {
        name: "adapters.entrypoints" for name in PROCESSES
    }
    assert all(callable(getattr(entrypoints, name)) for name in PROCESSES)


def test_a_worker_runs_until_sigterm() -> None:
    stopped: list[bool] = []

    async def run(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
        stopped.append(stop.is_set())

    entrypoints.run_until_signalled(run)
    assert stopped == [True]


def test_an_unknown_projector_names_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.delenv("TALLY_NATS_URL", raising=False)
    with pytest.raises(KeyError, match=r"no projector named 'nosuch' \(known: .*entitlements"):
        entrypoints.run_projector("nosuch")


def test_the_command_bus_needs_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.delenv("TALLY_NATS_URL", raising=False)
    with pytest.raises(ValueError, match="TALLY_NATS_URL is not set"):
        entrypoints.run_command_bus()
