"""Airflow's own components for tests that go through the scheduler, watched over the REST API:
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor), or
the same parts started one by one with CeleryExecutor and named Celery workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from lakehouse.airflow_env import airflow, airflow_env
from lakehouse.local_airflow import LocalAirflow, wait_for
from tests.conftest import free_port

__all__ = ["CeleryCluster", "Standalone", "wait_for"]


class Standalone(LocalAirflow):
    """``airflow standalone`` in a throwaway home on free ports; ``metadata_url`` picks the
    metadata database."""

    def __init__(self, home: Path, metadata_url: str | None = None, **extra: str) -> None:
        port = free_port()
        self.home = home
        db = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url} if metadata_url else {}
        env = airflow_env(
            home, AIRFLOW_HOME=str(home / ".airflow"), AIRFLOW__API__PORT=str(port),
            AIRFLOW__API__BASE_URL=f"http://localhost:{port}",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{port}/execution/",
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            **db, **extra)
        super().__init__(env, home / "standalone.log")


class CeleryCluster(Standalone):
    """api-server, scheduler, dag-processor and ``workers`` named ``airflow celery worker``
    processes: CeleryExecutor with Redis as broker and PostgreSQL as metadata and result backend.
    """

    def __init__(self, home: Path, metadata_url: str, broker_url: str, workers: int = 2, **extra: str) -> None:
        result_backend = "db+" + metadata_url  # keep the driver: SQLAlchemy 2.1 defaults to psycopg 3
        super().__init__(home, metadata_url, AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
                         AIRFLOW__CELERY__BROKER_URL=broker_url, AIRFLOW__CELERY__RESULT_BACKEND=result_backend,
                         AIRFLOW__CORE__HOSTNAME_CALLABLE="lakehouse.airflow_env.worker_hostname",
                         AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False", **extra)
        self.workers = [f"worker{i + 1}" for i in range(workers)]
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str, **env: str) -> None:
        exe = self.env["PATH"].split(os.pathsep)[0] + "/airflow"
        log = open(self.home / f"{name}.log", "w")
        self.procs.append(subprocess.Popen([exe, *args], env={**self.env, **env}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def __enter__(self) -> CeleryCluster:
        airflow("db", "migrate", env=self.env)
        self._start("api-server", "api-server", "--port", str(self.port))
        self._start("scheduler", "scheduler")
        self._start("dag-processor", "dag-processor")
        for name in self.workers:
            self._start(name, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2",
                        LAKEHOUSE_WORKER_NAME=name,
                        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
        wait_for(self._healthy, "the api-server to answer", 180, every_s=2)
        time.sleep(5)
        dead = [p.args[1:4] for p in self.procs if p.poll() is not None]
        if dead:  # e.g. a provider that cannot import: fail now, naming the log, not at the timeout
            self.__exit__()
            raise AssertionError(f"Airflow components exited at start: {dead}; see {self.home}/*.log")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
