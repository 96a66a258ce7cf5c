"""`pip install ./clients/python` works from a checkout: the distribution builds (hatchling)
into a fresh virtual environment, and what it installed imports and answers, without this
repository on the path. uv does the install here (`make venv` provides it); pip reads the same
pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.clients.conftest import ROOT


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_client_installs_into_a_fresh_environment(tmp_path: Path) -> None:
    source = tmp_path / "python"
    shutil.copytree(
        ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = tmp_path / "venv"
    run(*uv(), "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(*uv(), "pip", "install", "--quiet", "--python", python, source, cwd=tmp_path)
    probe = (
        "import tally_client, tally_client.models as m; "
        "from tally_client import Tally, AsyncTally, TallyBus, subscribe, PostgresStore; "
        "from tally_client._operations import OPERATIONS; "
        "print(tally_client.__file__, len(OPERATIONS), m.DefinePlanBody.__name__)"
    )
    out = run(python, "-I", "-c", probe, cwd=tmp_path).split()
    assert str(venv) in out[0] and int(out[1]) > 50 and out[2] == "DefinePlanBody"
