"""docker-compose.yml holds the operational promises of docs/deployment.md (no Docker engine is
needed: the file is loaded as YAML and its structure checked against those promises)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modq.settings import REPO_ROOT, Settings

# Service keys of the Compose specification that this file may use.
SERVICE_KEYS = {
    "build", "command", "depends_on", "deploy", "environment", "healthcheck", "image",
    "ports", "profiles", "restart", "stop_grace_period", "volumes",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period"}
LONG_RUNNING = ["redis", "postgres", "worker-gpu", "worker-cpu", "recover", "console", "flower"]
WORKERS = ["worker-gpu", "worker-cpu"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_only_compose_spec_keys(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"services", "volumes"} | {k for k in compose if k.startswith("x-")}
    for name, service in services(compose).items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        if "healthcheck" in service:
            assert set(service["healthcheck"]) <= HEALTHCHECK_KEYS, name
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services(compose), (name, dependency)
            assert condition["condition"] in (
                "service_started", "service_healthy", "service_completed_successfully",
            )  # fmt: skip
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services(compose)[dependency], dependency


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for service in services(compose).values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".", "$")):
                assert source in compose["volumes"], source


def test_redis_keeps_queued_listings_across_a_restart(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    command = redis["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    assert any(v.endswith(":/data") for v in redis["volumes"])  # the AOF outlives the container


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_restart(compose: dict[str, Any], name: str) -> None:
    assert services(compose)[name]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", ["redis", "postgres", *WORKERS])
def test_health_checks(compose: dict[str, Any], name: str) -> None:
    assert services(compose)[name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", WORKERS)
def test_workers(compose: dict[str, Any], name: str) -> None:
    worker = services(compose)[name]
    assert worker["command"][0] == "worker"  # the `modq worker` of the Makefile and README
    assert worker["stop_grace_period"] == "60s"
    assert float(Settings().fetch_deadline_s) < 60  # a batch's photos end well inside it
    test = " ".join(worker["healthcheck"]["test"])
    # celery@host: a single process (GPU); modq-0@host: the first a CPU worker supervises.
    assert "inspect ping" in test and "celery@$$HOSTNAME,modq-0@$$HOSTNAME" in test
    for dependency in ("redis", "postgres", "migrate"):
        assert dependency in worker["depends_on"]


def test_flower_is_local_and_needs_a_password(compose: dict[str, Any]) -> None:
    flower = services(compose)["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    script = flower["command"][-1]
    assert script.startswith('test -n "$$FLOWER_BASIC_AUTH" ||')
    assert '--basic-auth="$$FLOWER_BASIC_AUTH"' in script


def test_database_url_in_the_form_providers_give(compose: dict[str, Any]) -> None:
    url = compose["x-modq-env"]["MODQ_DATABASE_URL"]
    assert url.startswith("postgresql://")
    assert Settings(database_url=url).database_url.startswith("postgresql+psycopg2://")


def test_the_makefile_runs_the_same_commands() -> None:
    makefile = Path(REPO_ROOT / "Makefile").read_text()
    dockerfile = Path(REPO_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["modq"]' in dockerfile  # compose commands are `modq <command>`
    assert "$(BIN)/modq demo" in makefile


def test_a_recovery_sidecar_republishes_accepted_listings(compose: dict[str, Any]) -> None:
    recover = services(compose)["recover"]
    assert recover["command"][:1] == ["recover"] and "--every" in recover["command"]
    assert recover["restart"] == "unless-stopped"
