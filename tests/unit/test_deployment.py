"""docker-compose.yml and the Dockerfile name commands that exist (Docker does not run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adapters.cli.main import app
from projections.registry import build_projectors

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TALLY_SERVICES = {name: spec for name, spec in COMPOSE["services"].items() if "build" in spec}


def test_compose_runs_the_api_and_every_worker() -> None:
    commands = [spec["command"][1:] for spec in TALLY_SERVICES.values()]
    assert ["serve", "--host", "0.0.0.0", "--port", "8000"] in commands
    assert ["worker", "relay"] in commands
    assert ["worker", "command-bus"] in commands
    assert ["worker", "alerts"] in commands  # the alert evaluator
    assert ["worker", "sealer"] in commands  # the hash chain (tamper evidence)
    assert ["worker", "plugins"] in commands  # the plugins' lifecycle hooks
    for projector in build_projectors():
        assert ["worker", "projector", projector.NAME] in commands


@pytest.mark.parametrize("service", sorted(TALLY_SERVICES))
def test_each_tally_service_command_is_a_real_cli_command(service: str) -> None:
    command = TALLY_SERVICES[service]["command"]
    assert command[0] == "tally"
    words = [w for w in command[1:] if not w.startswith("-") and w not in ("0.0.0.0", "8000")]
    if words[:2] == ["worker", "projector"]:
        words = words[:2]  # NAME is an argument
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    env = TALLY_SERVICES[service]["environment"]
    assert {"TALLY_DATABASE_URL", "TALLY_NATS_URL", "TALLY_REDIS_URL"} <= set(env)


def test_the_image_runs_serve_by_default() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    assert 'CMD ["tally", "serve"' in dockerfile


CLUSTER = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())


def test_the_cluster_override_gives_every_tally_service_all_three_nats_nodes() -> None:
    services = CLUSTER["services"]
    nodes = ["nats", "nats-2", "nats-3"]
    for node in nodes:  # each routes to the two others, in one named cluster
        command = services[node]["command"]
        routes = command[command.index("--routes") + 1].split(",")
        assert sorted(routes) == sorted(f"nats://{o}:6222" for o in nodes if o != node)
        assert command[command.index("--cluster_name") + 1] == "tally"
    tally = set(TALLY_SERVICES) | {n for n, spec in services.items() if "build" in spec}
    for name in tally:
        env = services[name]["environment"]
        assert env["TALLY_NATS_URL"].split(",") == [f"nats://{n}:4222" for n in nodes], name
        assert env["TALLY_NATS_STREAM_REPLICAS"] == "3"


def test_the_cluster_override_adds_an_api_replica_and_standbys() -> None:
    commands = [spec["command"][1:] for spec in CLUSTER["services"].values() if "build" in spec]
    assert ["serve", "--host", "0.0.0.0", "--port", "8000"] in commands
    assert ["worker", "relay"] in commands
    assert ["worker", "projector", "usage"] in commands
    assert ["worker", "projector", "entitlements"] in commands
