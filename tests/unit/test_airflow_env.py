"""The forkserver preload of Airflow's LocalExecutor (lakehouse.airflow_env.PRELOAD, ADR 0029)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from lakehouse.airflow_env import DATA_LIBRARIES, PRELOAD, PROJECT, airflow_env

# A task process as the LocalExecutor makes it: the forkserver imports PRELOAD, a worker is
# forked from it, and the task is forked from the worker (Airflow's supervisor: a bare fork).
# The task then uses every library the way a pipeline step does. A library that started its
# thread pool or async runtime at import would hang or refuse in the grandchild.
TASK = textwrap.dedent("""
    import importlib, os, signal, sys, tempfile
    for name in sys.argv[1].split(","):
        importlib.import_module(name)
    {before_fork}
    def task():
        signal.alarm(60)
        import duckdb, polars as pl
        path = tempfile.mkdtemp() + "/t"
        pl.DataFrame({{"k": range(300_000), "v": range(300_000)}}).write_delta(path, mode="overwrite")
        got = pl.scan_delta(path).group_by(pl.col("k") % 7).agg(pl.col("v").sum()).collect()
        assert got.height == 7 and duckdb.sql("select count(*) from got").fetchall() == [(7,)]
        os._exit(0)
    def fork(target):
        pid = os.fork()
        if pid == 0:
            try:
                target()
            finally:
                os._exit(3)
        return os.waitpid(pid, 0)[1]
    def worker():
        os._exit(0 if fork(task) == 0 else 4)
    sys.exit(0 if fork(worker) == 0 else 5)
""")


def _forked_task(before_fork: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TASK.format(before_fork=before_fork), PRELOAD],
                          cwd=PROJECT, capture_output=True, text=True, timeout=180)


def test_a_task_forked_twice_after_the_preload_uses_every_library():
    proc = _forked_task()
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_check_would_see_a_runtime_started_before_the_fork():
    # the same task after the parent has used delta-rs (its runtime started): refused in the child
    proc = _forked_task("import polars as pl; pl.DataFrame({'a': [1]}).write_delta(tempfile.mkdtemp() + '/p')")
    assert proc.returncode != 0 and "Forked process detected" in proc.stderr, proc.stderr[-2000:]


def test_airflow_runs_the_local_executor_on_a_preloading_forkserver():
    env = airflow_env()
    assert env["AIRFLOW__CORE__MP_START_METHOD"] == "forkserver"
    assert env["AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"] == PRELOAD
    assert not [m for m in PRELOAD.split(",") if m.startswith(("lakehouse", "pipelines", "dags"))]


def test_a_celery_worker_imports_the_data_libraries_before_forking_its_pool():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from lakehouse.celery_config import CELERY_CONFIG

    assert airflow_env()["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "lakehouse.celery_config.CELERY_CONFIG"
    assert set(DATA_LIBRARIES) <= set(CELERY_CONFIG["imports"])
    assert {k: v for k, v in CELERY_CONFIG.items() if k != "imports"} == {
        k: v for k, v in DEFAULT_CELERY_CONFIG.items() if k != "imports"}  # Airflow's settings kept
