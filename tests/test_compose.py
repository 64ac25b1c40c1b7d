"""docker-compose.yml and the Dockerfile hold the operational promises of docs/deployment.md.

No container engine is needed: the compose file is validated against the Compose
specification (the `compose-spec` package's parser, which refuses unknown keys and values),
interpolated as `docker compose config` would, and its structure checked against those
promises; the image's install steps run for real in tests/test_wheel_install.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from modq.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
LONG_RUNNING = [
    "redis", "postgres", "worker-gpu", "worker-cpu", "recover", "console", "prometheus", "flower",
]  # fmt: skip
WORKERS = ["worker-gpu", "worker-cpu"]
PUBLISHED = ["console", "prometheus", "flower"]
SECRETS = {"POSTGRES_PASSWORD": "pw", "MODQ_CONSOLE_SECRET": "s" * 64}

_VAR = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """What `docker compose config` does to ${VAR}, ${VAR:-default} and ${VAR:?error}
    ($$ is a literal $ for the container's shell)."""

    def one(match: re.Match[str]) -> str:
        name, how, arg = match.groups()
        value = env.get(name, "")
        if how == ":?" and not value:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return value or (arg if how == ":-" else "")

    return _VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate(COMPOSE.read_text(), SECRETS))
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def validate(text: str) -> Any:
    """The file as `docker compose config` resolves it (variables interpolated, YAML merge
    keys `<<:` applied), parsed by the Compose specification's rules."""
    return PyCompose.from_json(json.dumps(yaml.safe_load(interpolate(text, SECRETS))))


def test_valid_against_the_compose_specification() -> None:
    parsed = validate(COMPOSE.read_text())
    assert set(parsed.service_names()) == {*LONG_RUNNING, "migrate"}
    # The validator bites: the same file with one unknown key, or a wrong value, is refused.
    broken = COMPOSE.read_text().replace("    restart: unless-stopped", "    restrat: yes", 1)
    with pytest.raises(ValueError, match="restrat"):
        validate(broken)
    wrong = COMPOSE.read_text().replace("condition: service_healthy", "condition: healthy", 1)
    with pytest.raises(ValueError, match="healthy"):
        validate(wrong)


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        interpolate(COMPOSE.read_text(), env)


def test_no_secret_has_a_default_or_sits_in_the_file(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"(PASSWORD|SECRET|BASIC_AUTH)\w*:-[^}]", text)
    assert "modq:modq@" not in text
    assert compose["x-modq-env"]["MODQ_DATABASE_URL"] == "postgresql://modq@postgres:5432/modq"
    assert compose["x-modq-env"]["MODQ_DATABASE_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert services(compose)["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pw"
    url = Settings(database_url="postgresql://modq@postgres:5432/modq", database_password="p w@")
    assert url.database_url == "postgresql+psycopg2://modq:p%20w%40@postgres:5432/modq"


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
def test_long_running_services_restart_and_have_health_checks(
    compose: dict[str, Any], name: str
) -> None:
    service = services(compose)[name]
    assert service["restart"] == "unless-stopped"
    assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


@pytest.mark.parametrize("name", ["worker-gpu", "worker-cpu", "recover", "console"])
def test_modq_services_check_health_with_modq_health(compose: dict[str, Any], name: str) -> None:
    test = services(compose)[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "modq", "health"]
    if name == "console":
        assert test[3:] == ["--url", "http://127.0.0.1:8080/healthz"]
    if name == "recover":
        assert "--heartbeat" in test


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_ports_are_on_loopback_unless_configured(
    compose: dict[str, Any], name: str
) -> None:
    for port in services(compose)[name]["ports"]:
        assert port.startswith("127.0.0.1:"), port
    for port in COMPOSE.read_text().split("ports:")[1:]:
        assert "${MODQ_PUBLISH_ADDRESS:-127.0.0.1}:" in port.splitlines()[0]


@pytest.mark.parametrize("name", WORKERS)
def test_workers(compose: dict[str, Any], name: str) -> None:
    worker = services(compose)[name]
    assert worker["command"][0] == "worker"  # the `modq worker` of the Makefile and README
    assert worker["stop_grace_period"] == "60s"
    assert float(Settings().fetch_deadline_s) < 60  # a batch's photos end well inside it
    assert worker["environment"]["MODQ_METRICS_PORT"] == "9100"
    for dependency in ("redis", "postgres", "migrate"):
        assert dependency in worker["depends_on"]


def test_prometheus_scrapes_every_worker_process(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        t for group in config["scrape_configs"][0]["static_configs"] for t in group["targets"]
    }
    processes = int(services(compose)["worker-cpu"]["command"][-1])
    assert {f"worker-cpu:{9100 + i}" for i in range(processes)} <= targets
    assert "worker-gpu:9100" in targets
    assert (
        "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (services(compose)["prometheus"]["volumes"])
    )


def test_flower_needs_a_password_and_never_sees_it_on_its_command_line(
    compose: dict[str, Any],
) -> None:
    flower = services(compose)["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == ""  # from the environment, no default
    script = flower["command"][-1]
    assert script.startswith('test -n "$FLOWER_BASIC_AUTH" ||')
    assert "basic-auth" not in script and "basic_auth" not in script


def test_migrate_runs_before_everything_that_uses_the_database(compose: dict[str, Any]) -> None:
    for name in ("worker-gpu", "worker-cpu", "recover", "console"):
        assert services(compose)[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_a_recovery_sidecar_republishes_accepted_listings(compose: dict[str, Any]) -> None:
    recover = services(compose)["recover"]
    assert recover["command"][:1] == ["recover"] and "--every" in recover["command"]


def test_the_image_is_built_from_the_wheel_by_the_tested_install_script() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.MULTILINE)
    assert stages == ["wheel", "cpu", "gpu"]
    assert "pip wheel -q --no-deps -w /wheels ." in dockerfile
    installs = re.findall(r"modq-install-runtime( --gpu)? /wheels/modq-\*\.whl", dockerfile)
    assert installs == [("",), (" --gpu",)] or installs == ["", " --gpu"]
    assert (
        dockerfile.count("COPY deploy/install-runtime.sh /usr/local/bin/modq-install-runtime") == 2
    )
    assert dockerfile.count("HEALTHCHECK") == 2 and 'CMD ["modq", "health"]' in dockerfile
    assert dockerfile.count("USER nobody") == 2 and "MODQ_DATA_DIR=/var/lib/modq" in dockerfile
    assert 'ENTRYPOINT ["modq"]' in dockerfile  # compose commands are `modq <command>`
    assert "$(BIN)/modq demo" in (REPO_ROOT / "Makefile").read_text()


def test_the_build_context_is_the_source_only() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"  # everything excluded, then the source let in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "modq", "training", "deploy"}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert source.split("/")[0] in allowed, source


def test_compose_file_is_what_the_docs_describe() -> None:
    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    for needle in ("docker compose run --rm migrate", "POSTGRES_PASSWORD", "MODQ_CONSOLE_SECRET"):
        assert needle in text, needle
    assert Path(COMPOSE).is_file()
