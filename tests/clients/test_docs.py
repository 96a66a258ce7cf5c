"""Every ```python block of docs/clients.md runs, in order, against a real `tally serve`, a
`tally worker command-bus` and NATS, each as a script of its own (as a reader would paste
it), with tally-client importable and the settings the page names in the environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.conftest import CLIENT_SRC, ROOT, CommandBus, stream_of
from tests.e2e.conftest import NATS_URL, Server

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

APP = "docs"  # this module's app on the session's server

PAGE = ROOT / "docs" / "clients.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[str]:
    return BLOCK.findall(PAGE.read_text())


def test_the_page_has_snippets_for_each_part() -> None:
    code = "\n".join(blocks())
    assert len(blocks()) >= 5
    for part in ("Tally(", "AsyncTally(", "TallyBus(", "subscribe(", "min_position="):
        assert part in code, part


def test_every_snippet_runs(live: Server, command_bus: CommandBus, tmp_path: Path) -> None:
    stream = stream_of(live)
    env = {
        **os.environ,
        "PYTHONPATH": str(CLIENT_SRC),
        "TALLY_URL": live.base_url,
        "TALLY_API_KEY": live.key(APP, "admin"),
        "TALLY_APP_ID": live.app_id(APP),
        "TALLY_NATS_URL": NATS_URL,
        "TALLY_BUS_PREFIX": command_bus.prefix,
        "TALLY_NATS_STREAM": stream["stream"],
        "TALLY_NATS_SUBJECT_PREFIX": stream["subject_prefix"],
    }
    for number, code in enumerate(blocks(), start=1):
        script = tmp_path / f"snippet_{number}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"snippet {number} failed:\n{code}\n{done.stderr[-3000:]}"
