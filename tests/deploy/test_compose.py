"""docker-compose.yml and the Dockerfile, validated without a Docker engine.

``docker-compose config`` (Debian's docker-compose) resolves anchors, merges and variable
interpolation exactly as ``docker compose up`` would; the assertions then hold the shape
the README promises: CeleryExecutor with two workers, healthchecks, no secret in the file.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import pytest
import yaml

from lakehouse.airflow_env import PROJECT
from tests.conftest import require_tool

REQUIRED = ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "MINIO_ROOT_PASSWORD")
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
           "airflow-worker-1", "airflow-worker-2")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = require_tool("docker-compose", hint="Debian: apt-get install docker-compose; `make setup` does it")
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run([exe, "-f", str(PROJECT / "docker-compose.yml"), "config"], env=clean | env,
                          capture_output=True, text=True, timeout=120, cwd=PROJECT)


@pytest.fixture(scope="module")
def compose() -> dict:
    values = {k: secrets.token_hex(16) for k in REQUIRED}
    proc = _config(values)
    assert proc.returncode == 0, proc.stderr
    assert not any(v in (PROJECT / "docker-compose.yml").read_text() for v in values.values())
    return yaml.safe_load(proc.stdout) | {"_secrets": values}


def test_the_file_refuses_to_start_without_its_secrets():
    proc = _config({})
    assert proc.returncode != 0 and "set POSTGRES_PASSWORD in .env" in proc.stderr
    listed = set(re.findall(r"^([A-Z_]+)=", (PROJECT / ".env.example").read_text(), re.M))
    assert set(REQUIRED) <= listed  # the example env file names every one


def test_airflow_runs_on_celery_with_postgres_redis_and_two_named_workers(compose):
    services = compose["services"]
    assert {"postgres", "redis", "minio", "minio-init", "airflow-init", *AIRFLOW} <= set(services)
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == compose["_secrets"]["AIRFLOW_JWT_SECRET"]  # one for all
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        sources = {v["source"] if isinstance(v, dict) else v.split(":")[0] for v in services[name]["volumes"]}
        assert "lake" in sources  # every component sees the same catalog, landing and locks
        # the lake is MinIO's per-layer buckets (ADR 0013), the buckets minio-init creates
        assert env["LAKEHOUSE_LAKE"] == "s3://lakehouse-{layer}/retail"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["LAKEHOUSE_LOCK_DIR"].startswith("/opt/lakehouse/data/")
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    init = " ".join(services["minio-init"]["command"])
    assert "for b in bronze silver gold; do mc mb --ignore-existing lake/lakehouse-$$b" in init
    hostnames = {services[w]["command"][services[w]["command"].index("--celery-hostname") + 1]
                 for w in ("airflow-worker-1", "airflow-worker-2")}
    assert len(hostnames) == 2
    assert services["airflow-init"]["command"][0].startswith("airflow db migrate")


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name.endswith("-init"):
            assert service.get("restart", "no") == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_image_is_multi_stage_pinned_non_root_and_health_checked():
    text = (PROJECT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M)
    assert len(stages) >= 2 and stages[-1][1] == "runtime"
    base = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"apache/airflow:3\.\d+\.\d+-python3\.11", base)  # pinned, never :latest
    runtime = text.split("AS runtime", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1] == "airflow"  # runs as the image's non-root user
    assert "HEALTHCHECK" in runtime and "uv sync --frozen --no-dev" in text  # the locked dependencies
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)
