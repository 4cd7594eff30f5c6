"""The environment Airflow runs in on embedded defaults: SQLite metadata under the project.

Used by ``make demo``, the tests and ``make airflow-ui`` so all three agree. Any
variable already set (say a PostgreSQL ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``) wins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The third-party libraries pipeline steps import: a task process inherits them from the
# process Airflow forks it from, where they were imported once (ADR 0029). None of them starts a
# thread pool or an async runtime at import (tests/unit/test_airflow_env.py forks after them).
DATA_LIBRARIES = ["polars", "pyarrow", "pyarrow.parquet", "pandas", "pandera.polars", "deltalake", "duckdb",
                  "sqlalchemy", "requests"]
# What the forkserver of Airflow's LocalExecutor imports before forking its workers: Airflow's
# executor path (its own example) and the data libraries.
PRELOAD = ",".join(["airflow", "airflow.executors.local_executor", "airflow.sdk.execution_time.supervisor",
                    "airflow.sdk.execution_time.task_runner", *DATA_LIBRARIES])


def airflow_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for ``airflow`` subprocesses rooted at ``home`` (default: the project)."""
    home = Path(home or PROJECT)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "LAKEHOUSE_HOME": str(home),
        "AIRFLOW_HOME": str(home / ".airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # INFO: a task's log in the UI holds what the pipeline did (rows, rejects, partitions)
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__API__PORT": "8080",
        # embedded defaults are one machine's: the UI and the task execution API listen on
        # loopback only (docker-compose and Terraform set their own host)
        "AIRFLOW__API__HOST": "127.0.0.1",
        # on one small machine (2 cores, SQLite) the API server can take more than the default
        # 5 s to answer a task's heartbeat under load; after 3 misses the task would be killed
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "10",
        # the LocalExecutor's workers come from a forkserver that imported the data libraries
        # once: each task process is forked from a worker and inherits them, where it imported
        # them itself before (~0.3-1 s of CPU a task, 21 tasks a day; ADR 0029). Only third-party
        # libraries: the pipeline's own code is still imported fresh by every task.
        "AIRFLOW__CORE__MP_START_METHOD": "forkserver",
        "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": PRELOAD,
        # the same for a Celery worker: its pool processes are forked from the worker, which
        # imports Celery's `imports` at start (read only under the CeleryExecutor)
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "lakehouse.celery_config.CELERY_CONFIG",
    }
    merged = {**env, **os.environ, **extra}
    # tasks reach the api-server where it listens: on the configured port, over IPv4 loopback
    # (Airflow's default is localhost:8080 whatever the port)
    api = f"http://127.0.0.1:{merged['AIRFLOW__API__PORT']}"
    merged.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"{api}/execution/")
    merged.setdefault("AIRFLOW__API__BASE_URL", f"http://localhost:{merged['AIRFLOW__API__PORT']}")
    if "AIRFLOW__API_AUTH__JWT_SECRET" not in merged:
        merged["AIRFLOW__API_AUTH__JWT_SECRET"] = _jwt_secret(Path(merged["AIRFLOW_HOME"]))
    # airflow starts its parts as `airflow ...` subprocesses: this venv's bin must come first
    merged["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    return merged


def _jwt_secret(airflow_home: Path) -> str:
    """The home's signing key for Airflow's API tokens, made once (64 random bytes, as HS512
    wants: Airflow's own default is 16 and every component warns about it). Every process of a
    home must share it, so it lives in the home, created exclusively (parallel starts agree)."""
    import secrets

    path = airflow_home / "jwt_secret"
    if not path.exists():
        airflow_home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(64))
    for _ in range(50):  # a parallel creator may not have written it yet
        if text := path.read_text().strip():
            return text
        import time

        time.sleep(0.05)
    raise RuntimeError(f"{path} stays empty")


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable``: ``LAKEHOUSE_WORKER_NAME`` if set, else the FQDN.

    Several Celery workers on one host (or in containers sharing a network name) otherwise
    report the same hostname on every task instance; naming them shows which worker ran what.
    """
    import socket

    return os.environ.get("LAKEHOUSE_WORKER_NAME") or socket.getfqdn()


def airflow(*args: str, env: dict[str, str], check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run the ``airflow`` CLI of this environment."""
    exe = str(Path(sys.executable).parent / "airflow")
    out = subprocess.PIPE if quiet else None
    proc = subprocess.run([exe, *args], env=env, stdout=out, stderr=subprocess.STDOUT if quiet else None,
                          text=True, check=False)
    if check and proc.returncode != 0:
        tail = (proc.stdout or "")[-4000:]
        raise RuntimeError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return proc
