"""Airflow's own components for tests that go through the scheduler, watched over the REST API:
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor), or
the same parts started one by one with CeleryExecutor and named Celery workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from lakehouse.airflow_env import airflow, airflow_env
from tests.conftest import free_port


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float, every_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Standalone:
    """``airflow standalone`` in a throwaway home; ``metadata_url`` picks the metadata database."""

    def __init__(self, home: Path, metadata_url: str | None = None, **extra: str) -> None:
        self.port = free_port()
        self.home = home
        self.airflow_home = home / ".airflow"
        db = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url} if metadata_url else {}
        self.env = airflow_env(
            home, AIRFLOW_HOME=str(self.airflow_home), AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=f"http://localhost:{self.port}",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{self.port}/execution/",
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            **db, **extra)
        self.url = f"http://localhost:{self.port}"
        self._token: str | None = None

    def __enter__(self) -> Standalone:
        airflow("db", "migrate", env=self.env)
        self._log = open(self.home / "standalone.log", "w")
        exe = self.env["PATH"].split(os.pathsep)[0] + "/airflow"
        self.proc = subprocess.Popen([exe, "standalone"], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._healthy, "the api-server to answer", 180, every_s=2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).ok
        except requests.RequestException:
            return False

    # ------------------------------------------------------------------ REST API
    @property
    def password(self) -> str:
        """The admin password the simple auth manager generated on first start."""
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        return wait_for(lambda: path.exists() and json.loads(path.read_text()).get("admin"),
                        "the generated admin password", 60, every_s=1)

    def token(self) -> str:
        if self._token is None:
            resp = requests.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                                 timeout=10)
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(method, f"{self.url}/api/v2/{path}", timeout=30,
                                headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
        if not resp.ok:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                        params={"limit": 100})["task_instances"]

    def unpause(self, dag_id: str) -> None:
        """Once the dag-processor has parsed the DAG, unpause it."""
        def parsed() -> bool:
            try:
                self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
                return True
            except AssertionError:
                return False

        wait_for(parsed, f"{dag_id} to be parsed", 180, every_s=3)

    def backfill(self, dag_id: str, from_date: str, to_date: str, *extra: str) -> None:
        """``airflow backfill create`` (the CLI users run).

        Retried while SQLite's single writer is busy, and while the scheduler has not yet
        marked an earlier backfill of the DAG complete (one running backfill per DAG).
        """
        def created() -> bool:
            proc = airflow("backfill", "create", "--dag-id", dag_id, "--from-date", from_date,
                           "--to-date", to_date, *extra, env=self.env, check=False)
            busy = ("database is locked" in proc.stdout or "AlreadyRunningBackfill" in proc.stdout)
            if proc.returncode != 0 and not busy:
                raise AssertionError(f"backfill create failed:\n{proc.stdout[-3000:]}")
            return proc.returncode == 0

        wait_for(created, "backfill create to get the metadata write lock", 120, every_s=3)

    def wait_runs(self, dag_id: str, logical_dates: list[str], timeout_s: float,
                  states: tuple[str, ...] = ("success",)) -> list[dict]:
        """Wait until a run of each date has finished; fail early if one ends outside ``states``."""
        def done() -> list[dict] | None:
            runs = {r["logical_date"][:10]: r for r in self.dag_runs(dag_id)
                    if r["logical_date"] and r["logical_date"][:10] in logical_dates}
            finished = [r for r in runs.values() if r["state"] in ("success", "failed")]
            bad = [r for r in finished if r["state"] not in states]
            if bad:
                raise AssertionError(f"runs ended {[(r['logical_date'], r['state']) for r in bad]}")
            return finished if len(finished) == len(logical_dates) else None

        return wait_for(done, f"{len(logical_dates)} {dag_id} runs to finish", timeout_s, every_s=5)


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
