"""Airflow's own components on one machine, driven as a user drives them: ``airflow standalone``
(api-server, scheduler, dag-processor, triggerer; LocalExecutor), the ``airflow`` CLI for
backfills, and the REST API to watch runs.

``make demo`` runs its days through this scheduler, so the UI that ``make airflow-ui`` opens
on the same Airflow home shows them as they happened: real start and end times, every task's
log, backfill runs in business-date order. The tests' clusters (tests/airflow_cluster.py)
are this class on throwaway ports and homes.
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

from lakehouse.airflow_env import airflow


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float, every_s: float = 5.0) -> Any:
    """``predicate()``'s first truthy value, polled every ``every_s``; an error after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class LocalAirflow:
    """``airflow standalone`` on ``env`` (see ``airflow_env``), logging to ``log_file``."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = env
        self.airflow_home = Path(env["AIRFLOW_HOME"])
        self.port = int(env.get("AIRFLOW__API__PORT", "8080"))
        self.url = f"http://localhost:{self.port}"
        self.log_file = log_file
        self._token: str | None = None

    def __enter__(self) -> LocalAirflow:
        import contextlib
        import socket

        with contextlib.closing(socket.socket()) as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:  # else we would watch someone else's Airflow
                raise RuntimeError(f"port {self.port} is taken (another `make airflow-ui`?); stop it or set "
                                   "AIRFLOW__API__PORT")
        airflow("db", "migrate", env=self.env)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "w")
        exe = self.env["PATH"].split(os.pathsep)[0] + "/airflow"
        self.proc = subprocess.Popen([exe, "standalone"], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._healthy, f"the api-server on {self.url} (log: {self.log_file})", 180, every_s=2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def _healthy(self) -> bool:
        import requests

        proc = getattr(self, "proc", None)  # None when a subclass starts the parts one by one
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited ({proc.returncode}); see {self.log_file}")
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
        import requests

        if self._token is None:
            resp = requests.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                                 timeout=10)
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        resp = requests.request(method, f"{self.url}/api/v2/{path}", timeout=30,
                                headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
        if not resp.ok:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def dag_runs(self, dag_id: str) -> list[dict]:
        """The newest 100 runs of ``dag_id``, newest first (a home that ran more days than that
        keeps the older ones out of sight; in the default order, oldest first, the newest would be)."""
        return self.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "-id"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                        params={"limit": 100})["task_instances"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause ``dag_id`` once the dag-processor has parsed it."""
        def parsed() -> bool:
            try:
                self.api("PATCH", f"dags/{dag_id}", json={"is_paused": paused})
                return True
            except AssertionError:
                return False

        wait_for(parsed, f"{dag_id} to be parsed", 180, every_s=3)

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def backfill(self, dag_id: str, from_date: str, to_date: str, *extra: str) -> None:
        """``airflow backfill create`` (the CLI users run).

        Airflow runs one backfill of a DAG at a time, and its scheduler marks a finished one
        complete only every 30 s (a fixed interval, ``_mark_backfills_complete``): a demo or test
        that runs a day per backfill waited 15 s on average between days. So the earlier
        backfill is completed here as soon as the scheduler's own condition holds (no run of
        the DAG queued or running), else this waits on the REST API (retrying the CLI cost a
        process of about 4 s of CPU every 3 s). Retried while SQLite's single writer is busy.
        """
        wait_for(lambda: self._complete_finished_backfill(dag_id),
                 f"{dag_id}'s earlier backfill to finish and be marked complete", 300, every_s=2)

        def created() -> bool:
            proc = airflow("backfill", "create", "--dag-id", dag_id, "--from-date", from_date,
                           "--to-date", to_date, *extra, env=self.env, check=False)
            busy = ("database is locked" in proc.stdout or "AlreadyRunningBackfill" in proc.stdout)
            if proc.returncode != 0 and not busy:
                raise AssertionError(f"backfill create failed:\n{proc.stdout[-3000:]}")
            return proc.returncode == 0

        # 300 s: on a loaded 2-core machine the scheduler took over 120 s to mark the previous
        # backfill complete (a CI run timed out here right after the demo's backfill)
        wait_for(created, "backfill create to get the metadata write lock", 300, every_s=3)

    def _complete_finished_backfill(self, dag_id: str) -> bool:
        """Whether no backfill of ``dag_id`` is active, after completing the newest if all its
        runs have finished: Airflow's cancel endpoint, which on such a backfill does what the
        scheduler's timer would (sets ``completed_at``; no run is left to fail) and pauses it."""
        import requests

        newest = self.api("GET", "backfills", params={"dag_id": dag_id, "order_by": "-id", "limit": 1})["backfills"]
        if not newest or newest[0]["completed_at"] is not None:
            return True
        unfinished = self.api("GET", f"dags/{dag_id}/dagRuns", params={"state": ["queued", "running"], "limit": 1})
        if unfinished["total_entries"]:
            return False
        resp = requests.put(f"{self.url}/api/v2/backfills/{newest[0]['id']}/cancel", timeout=30,
                            headers={"Authorization": f"Bearer {self.token()}"})
        return resp.ok or resp.status_code == 409  # 409: the scheduler completed it meanwhile

    def backfill_active(self, dag_id: str) -> bool:
        """Whether a backfill of ``dag_id`` is not yet complete (the newest: one runs at a time)."""
        newest = self.api("GET", "backfills", params={"dag_id": dag_id, "order_by": "-id", "limit": 1})["backfills"]
        return bool(newest) and newest[0]["completed_at"] is None

    def wait_runs(self, dag_id: str, logical_dates: list[str], timeout_s: float,
                  states: tuple[str, ...] = ("success",)) -> list[dict]:
        """Wait until a run of each date has finished; fail early if one ends outside ``states``."""
        def done() -> list[dict] | None:
            runs = {r["logical_date"][:10]: r for r in self.dag_runs(dag_id)
                    if r["logical_date"] and r["logical_date"][:10] in logical_dates}
            finished = [r for r in runs.values() if r["state"] in ("success", "failed")]
            bad = [r for r in finished if r["state"] not in states]
            if bad:
                failed = {r["logical_date"][:10]: sorted(t["task_id"] for t in self.task_instances(dag_id, r["dag_run_id"])
                                                         if t["state"] == "failed") for r in bad}
                raise AssertionError(f"{dag_id} runs ended {[(r['logical_date'], r['state']) for r in bad]}; failed "
                                     f"tasks: {failed}; task logs under {self.airflow_home / 'logs'}")
            return finished if len(finished) == len(logical_dates) else None

        return wait_for(done, f"{len(logical_dates)} {dag_id} runs to finish", timeout_s, every_s=5)

    def wait_new_run(self, dag_id: str, known: set[str], timeout_s: float, run_type: str | None = None) -> dict:
        """Wait for a run of ``dag_id`` not in ``known`` (run ids), of ``run_type`` if given, to
        finish; fail if it failed."""
        def done() -> dict | None:
            new = [r for r in self.dag_runs(dag_id) if r["dag_run_id"] not in known
                   and (run_type is None or r["run_type"] == run_type) and r["state"] in ("success", "failed")]
            if new and new[0]["state"] != "success":
                raise AssertionError(f"{dag_id} run {new[0]['dag_run_id']} ended {new[0]['state']}")
            return new[0] if new else None

        return wait_for(done, f"a new {dag_id} run to finish", timeout_s, every_s=5)
