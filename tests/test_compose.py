"""docker-compose.yml has the production shape, and .env.example lists every setting.

Read as YAML (merge keys resolved by PyYAML), so these run without Docker; the
last test hands the file to ``docker compose config`` when the CLI is there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from smsq.core.names import QUEUE_CAMPAIGN, QUEUE_OTP, QUEUE_TRANSACTIONAL, QUEUE_WEBHOOKS
from smsq.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "api",
    "worker-otp",
    "worker-bulk",
    "beat",
    "simulator",
    "flower",
}
SETTINGS = {f"SMSQ_{name.upper()}" for name in Settings.model_fields}
REQUIRED = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD", "SMSQ_PUBLIC_URL"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def queues(service: dict[str, Any]) -> set[str]:
    cmd = command(service)
    flag = "--queues" if "--queues" in cmd else "-Q"
    return set(cmd[cmd.index(flag) + 1].split(","))


def test_every_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_redis_persists_with_aof_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    cmd = command(services["redis"])
    assert cmd[0] == "redis-server"
    options = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_migrate_runs_once_and_everything_smsq_waits_for_it(
    services: dict[str, dict[str, Any]],
) -> None:
    migrate = services["migrate"]
    assert command(migrate) == ["smsq", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker-otp", "worker-bulk", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_the_commands_are_smsqs(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["api"])[:4] == ["smsq", "api", "--host", "0.0.0.0"]
    assert command(services["beat"])[:2] == ["smsq", "beat"]
    assert command(services["simulator"])[:4] == ["smsq", "simulator", "--host", "0.0.0.0"]
    assert command(services["flower"])[:4] == ["celery", "-A", "worker.app", "flower"]
    for name in ("worker-otp", "worker-bulk"):
        assert command(services[name])[:2] == ["smsq", "worker"], name


def test_latency_and_bulk_queues_have_their_own_workers(
    services: dict[str, dict[str, Any]],
) -> None:
    otp = queues(services["worker-otp"])
    bulk = queues(services["worker-bulk"])
    assert {QUEUE_OTP, QUEUE_TRANSACTIONAL} <= otp
    assert QUEUE_CAMPAIGN not in otp  # an OTP never waits behind a campaign
    assert bulk == {QUEUE_CAMPAIGN}
    assert QUEUE_WEBHOOKS in otp | bulk
    # worker-bulk scales with --scale: nothing may pin one container.
    for pinned in ("container_name", "hostname"):
        assert pinned not in services["worker-bulk"]
    assert "ports" not in services["worker-bulk"]


def test_workers_prefetch_one_task() -> None:
    # `smsq worker` takes its prefetch from the app; the compose file has no flag for it.
    from worker.app import make_celery

    app = make_celery(Settings())
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is True


def test_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    beat = services["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert any(v.startswith("beat-data:") for v in beat["volumes"])


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name == "migrate":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_required_secrets_fail_loudly_when_unset() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name in REQUIRED:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", text), f"{name} is not ${{{name}:?...}}"
    # A secret never has a default in the compose file.
    for name in REQUIRED - {"SMSQ_PUBLIC_URL"}:
        assert not re.search(rf"\$\{{{name}:?-", text), f"{name} has a default"


def test_every_smsq_variable_in_compose_is_a_setting() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\bSMSQ_[A-Z0-9_]+", text))
    assert used
    assert used <= SETTINGS, used - SETTINGS


def test_env_example_lists_every_setting_and_every_required_secret() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*(SMSQ_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert listed >= SETTINGS, f"missing in .env.example: {sorted(SETTINGS - listed)}"
    assert listed <= SETTINGS, f"not settings: {sorted(listed - SETTINGS)}"
    for name in REQUIRED:
        assert re.search(rf"^{name}=$", text, flags=re.MULTILINE), f"{name} not required"


def test_env_example_defaults_are_the_settings_defaults() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name, value in re.findall(r"^# (SMSQ_[A-Z0-9_]+)=(\S*)", text, flags=re.MULTILINE):
        field = Settings.model_fields.get(name.removeprefix("SMSQ_").lower())
        if field is None or field.default is None or not value:
            continue
        assert str(value).lower() == str(field.default).lower(), name


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin (docker compose version failed)")
    return [docker, "compose"]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker_compose = _docker_compose()
    env = tmp_path / "test.env"
    env.write_text(
        "POSTGRES_PASSWORD=pw\nREDIS_PASSWORD=pw\nFLOWER_PASSWORD=pw\n"
        "SMSQ_PUBLIC_URL=https://sms.example.com\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [*docker_compose, "-f", str(COMPOSE), "--env-file", str(env), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
