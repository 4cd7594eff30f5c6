"""Shared fixtures: a tiny simulated retailer in a temporary lake home."""

from __future__ import annotations

import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest

# Airflow reads its configuration at import: point it at a throwaway home first.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="lakehouse-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
# One PII key for the whole run (tests compare lakes built in different homes and processes);
# a fake built at run time, never a literal secret in the repository.
os.environ.setdefault("LAKEHOUSE_PII_KEY", "test-pii-key-" + "0123456789abcdef")

from lakehouse.config import DomainConfig, load_domain  # noqa: E402 - after the Airflow env
from pipelines.retail.simulator import SimulationParams, materialise  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT / "configs" / "retail"
START = date(2026, 10, 31)
TINY = SimulationParams(n_skus=12, n_warehouses=2, n_customers=30, history_start=date(2026, 6, 1),
                        end=START + timedelta(days=3), inventory_from=START - timedelta(days=6), seed=17,
                        dirty_rate=0.01, change_horizon_days=155)
# seed 17: rejected order lines fall inside the first runs' lookback windows (re-read rejects are
# counted once) and some closed accounts reopen within the 155 days (tests/unit/test_simulator.py
# checks that what a day holds never depends on how far the world is simulated)


class TinyRetail:
    """A lake home with tiny sources; ``advance(day)`` moves the sources to that day."""

    def __init__(self, home: Path, api_url: str, api_file: Path) -> None:
        self.home, self.api_url, self.api_file = home, api_url, api_file
        os.environ["LAKEHOUSE_HOME"] = str(home)
        os.environ["RETAIL_API_URL"] = api_url
        self.cfg: DomainConfig = load_domain(CONFIG_DIR)

    def advance(self, day: date, params: SimulationParams = TINY) -> dict:
        return materialise(params, day, erp_url=self.cfg.source("erp").url,
                           landing=Path(self.cfg.source("inventory_drop").landing_dir),
                           api_file=self.api_file)


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from pipelines.retail.api_server import serve

    api_file = tmp_path / "data" / "sources" / "api" / "supplier_performance.parquet"
    server = serve(api_file)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setenv("RETAIL_API_URL", url)
    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))  # incidents per test
    try:
        yield TinyRetail(tmp_path, url, api_file)
    finally:
        server.shutdown()
        server.server_close()


def run_day_direct(cfg: DomainConfig, day: date, run_id: str = "test", *, train: bool = False,
                   skip: tuple[str, ...] = ()) -> dict:
    """The daily DAG's declared steps (``lakehouse.steps.DAILY``), in its order and with its
    trigger rules, without Airflow (fast; the Airflow path is tested apart).

    ``skip`` leaves out named steps where a test says why (their edges go with them);
    ``train`` then runs the training pipeline's step as the weekly run after ``day`` would.
    A failing task raises its own error once every independent task has run.
    """
    from lakehouse import steps

    only = [s.name for s in steps.DAILY if s.name not in skip]
    ctx = steps.RunContext(cfg=cfg, run_date=day, run_id=run_id)
    try:
        outcomes = steps.run_local(steps.DAILY, ctx, only=only)
        if train:
            nxt = steps.RunContext(cfg=cfg, run_date=day + timedelta(days=1), run_id=run_id)
            outcomes |= steps.run_local(steps.TRAINING, nxt)
    except steps.StepsFailed as exc:
        raise exc.first_error from exc
    return outcomes


def comparable_hashes(lake: Path, *, ignore: set[str] | frozenset[str] = frozenset(),
                      skip_datasets: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """``layer_hashes`` for lakes reached by different routes (order, concurrency, rebuild).

    Tier-3 quality verdicts record what a check saw on the day it ran (ADR 0011): days run in
    another order see other data. Everything else, tiers 1-2 of the quality history included,
    must match, so only the tier-3 rows are left out (and the checks of ``skip_datasets``,
    tables a test already expects to differ).
    """
    import polars as pl

    from lakehouse import storage

    hashes = storage.layer_hashes(lake, ignore=ignore)
    if "gold.quality_checks" in hashes:
        checks = storage.scan(lake, "gold", "quality_checks").filter(
            pl.col("tier") < 3, ~pl.col("dataset").is_in(list(skip_datasets)))
        hashes["gold.quality_checks"] = storage.frame_hash(checks, ignore=ignore)
    return hashes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(msg: str) -> None:
    """Skip with a clear message locally; under CI (``CI=true``) a missing prerequisite fails."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires {msg}")
    pytest.skip(msg)


def require_tool(*names: str, hint: str) -> str:
    """The path of the first of ``names`` on PATH; else skip locally / fail under CI."""
    import shutil

    found = next((p for p in map(shutil.which, names) if p), None)
    if not found:
        missing(f"{names[0]} is not installed ({hint})")
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Whole-Airflow tests first: under ``--dist worksteal`` they then fill the first worker's
    queue and run back to back from the start, while the other worker takes everything else
    (instead of both workers meeting at the lock at the end)."""
    items.sort(key=lambda item: "whole_airflow" not in getattr(item, "fixturenames", ()))


@pytest.fixture
def whole_airflow():
    """One whole-Airflow test (standalone: 4 components + executors) at a time, across xdist
    workers: two side by side on 2 cores starve each other's schedulers into timeouts.

    A file lock, because pytest-xdist's ``xdist_group`` does not group under pytest 9 (the
    node-id suffix it relies on is ignored); ``--dist worksteal`` lets the other worker
    take the waiting worker's queued tests meanwhile.
    """
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / "lakehouse-tests-whole-airflow.lock"
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def require_service(host: str, port: int, name: str) -> None:
    """Skip with a clear message when a service is missing locally; under CI, fail instead."""
    import socket

    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        missing(f"{name} is not reachable on {host}:{port} ({exc}); start it (see README, Tests)")


@pytest.fixture
def redis_url():
    """A Redis database of the machine's server (127.0.0.1:6379), empty before and after."""
    import random

    import redis

    require_service("127.0.0.1", 6379, "Redis")
    db = random.Random().randint(1, 15)  # 0 is left to whatever else uses this Redis
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    client.flushdb()
    try:
        yield f"redis://127.0.0.1:6379/{db}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    require_service("127.0.0.1", 5432, "PostgreSQL")
    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                             isolation_level="AUTOCOMMIT")
    name = f"lakehouse_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class LogLines(list):
    """Messages of one logger, caught by a handler on that logger itself: pytest's ``caplog``
    hangs on the root logger, which Airflow's logging set-up replaces when a step imports it."""

    def __init__(self, name: str) -> None:
        import logging

        super().__init__()
        self.logger = logging.getLogger(name)
        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = lambda record: self.append(record.getMessage())

    def __enter__(self) -> LogLines:
        import logging

        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
