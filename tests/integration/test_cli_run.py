"""``lakehouse run`` runs the declared daily steps: a broken source fails its own tasks only,
every failure is reported, the exit code says so, and the run is in ``lakehouse status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from lakehouse import runlog, storage
from tests.conftest import START, free_port


def test_a_broken_source_fails_alone_and_the_run_is_recorded(tiny):
    tiny.advance(START)
    env = {**os.environ, "RETAIL_API_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    out = subprocess.run([sys.executable, "-m", "lakehouse.cli", "run", "--date", START.isoformat()],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode != 0
    assert "1 task(s) failed: extract_supplier_api" in out.stderr
    printed = json.loads(out.stdout)
    assert printed["extract_supplier_api"]["state"] == "failed"
    assert printed["silver_supplier_performance"]["state"] == "upstream_failed"
    # every entity of the healthy sources reached silver
    healthy = [c.entity for c in tiny.cfg.contracts if c.source != "supplier_api"]
    assert all(printed[f"silver_{e}"]["state"] == "success" for e in healthy)
    assert all(storage.row_count(tiny.cfg.lake, "silver", e) > 0 for e in healthy if e != "inventory_counts")
    assert printed["build_gold"]["state"] == "upstream_failed"
    # the dashboard and the freshness check still ran, and the dashboard names the failure
    assert printed["write_report"]["state"] == printed["check_freshness"]["state"] == "success"
    assert "extract_supplier_api" in Path(printed["write_report"]["result"]).read_text()

    # progress: a line per task as it ends; then a summary whose numbers are the JSON's, and the
    # rejects by rule are the quarantine's own (counted here from silver.quarantine)
    lines = out.stderr.splitlines()
    assert all(any(ln.startswith(f"  {t} ") and f" {v['state']} " in ln for ln in lines) for t, v in printed.items())
    states = {s: sum(1 for v in printed.values() if v["state"] == s) for s in {v["state"] for v in printed.values()}}
    assert (f"lakehouse run {START} (retail): {len(printed)} tasks, "
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))) in out.stderr
    failed_line = next(ln for ln in lines if ln.startswith("FAILED extract_supplier_api: "))
    assert "Connection refused" in failed_line  # the cause, not cut off before it
    q = (storage.scan(tiny.cfg.lake, "silver", "quarantine")
         .filter(pl.col("ingest_date").cast(pl.String) == START.isoformat()).collect()
         .with_row_index("_q").with_columns(pl.col("rule").str.split("; ")).explode("rule").unique(["_q", "rule"]))
    expected = {e: dict(g.group_by("rule").len().iter_rows()) for (e,), g in q.group_by("entity")}
    assert expected, "the tiny day has rejects to count"
    for entity, by_rule in expected.items():
        assert printed[f"silver_{entity}"]["result"]["rejected_by_rule"] == by_rule
        rows = q.filter(pl.col("entity") == entity)["_q"].n_unique()
        assert any(ln.startswith(f"  {entity}: {rows:,} rows (") for ln in lines), (entity, out.stderr[-2000:])

    # the history holds one record per task, computed independently of the CLI's own output
    tries = runlog.read(tiny.cfg.lake)
    assert tries["run_type"].unique().to_list() == ["cli"]
    assert dict(tries.group_by("state").len().iter_rows()) == {
        state: sum(1 for v in printed.values() if v["state"] == state)
        for state in {v["state"] for v in printed.values()}}
    # each task's peak memory, as printed and as kept: a process holds at least the interpreter
    # and Polars (over 50 MB), no tiny day's task comes near 4 GB, and a task that never ran has none
    peaks = dict(tries.select("task_id", "peak_rss_mb").iter_rows())
    assert peaks == {t: v["peak_rss_mb"] for t, v in printed.items()}
    ran = {t for t, v in printed.items() if v["state"] != "upstream_failed"}
    assert all(50 < peaks[t] < 4096 for t in ran) and all(peaks[t] is None for t in peaks.keys() - ran), peaks
    summary = runlog.run_summary(tries)
    assert summary.height == 1 and summary["failed"][0] == 1
    assert summary["business_date"][0] == START

    status = subprocess.run([sys.executable, "-m", "lakehouse.cli", "status", "--as-of", START.isoformat()],
                            capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    assert "1 failed" in status and summary["run_id"][0] in status
    assert pl.Series(tries["task_id"]).n_unique() == len(printed)


def test_a_domain_config_outside_the_project(tmp_path):
    """A user's own repository holds the domain's YAML: ``--config-dir`` or
    ``LAKEHOUSE_CONFIG_DIR`` point the CLI at it; a folder without domain.yaml is one line."""
    import shutil

    from tests.conftest import CONFIG_DIR

    own = tmp_path / "my-repo" / "shop"
    shutil.copytree(CONFIG_DIR, own)
    (own / "domain.yaml").write_text((own / "domain.yaml").read_text().replace("name: retail", "name: shop"))
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path / "home")}
    for args, extra in ((["--config-dir", str(own)], {}), ([], {"LAKEHOUSE_CONFIG_DIR": str(own)})):
        out = subprocess.run([sys.executable, "-m", "lakehouse.cli", *args, "catalog"],
                             capture_output=True, text=True, env=env | extra, timeout=300)
        assert out.returncode == 0, out.stderr
        out = subprocess.run([sys.executable, "-m", "lakehouse.cli", *args, "sql", "SELECT 42 AS answer"],
                             capture_output=True, text=True, env=env | extra, timeout=300)
        assert out.returncode == 0 and "42" in out.stdout, out.stderr
    no_catalog = subprocess.run([sys.executable, "-m", "lakehouse.cli", "sql", "SELECT 1"], capture_output=True,
                                text=True, env={**env, "LAKEHOUSE_HOME": str(tmp_path / "empty")}, timeout=300)
    assert no_catalog.returncode != 0 and no_catalog.stderr.startswith("lakehouse sql: no catalog at")
    missing = subprocess.run([sys.executable, "-m", "lakehouse.cli", "--config-dir", str(tmp_path), "status"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode != 0 and missing.stderr.strip() == (
        f"lakehouse: no domain.yaml in {tmp_path} (--config-dir, LAKEHOUSE_CONFIG_DIR or LAKEHOUSE_DOMAIN_PATH)")
    # the folder holding it on LAKEHOUSE_DOMAIN_PATH: found by --domain, as the DAGs find it
    on_path = {**env, "LAKEHOUSE_DOMAIN_PATH": str(own.parent)}
    nolake = subprocess.run([sys.executable, "-m", "lakehouse.cli", "--domain", "shop", "status"],
                            capture_output=True, text=True, env=on_path | {"LAKEHOUSE_HOME": str(tmp_path / "nowhere")},
                            timeout=300)
    # ... and a lake that does not exist is an error, not an empty lake with every table stale
    assert nolake.returncode != 0 and nolake.stderr.startswith(
        f"lakehouse: no lake at {tmp_path / 'nowhere' / 'data' / 'lake'}: run from the project folder"), nolake.stderr
    unknown = subprocess.run([sys.executable, "-m", "lakehouse.cli", "--domain", "nope", "status"],
                             capture_output=True, text=True, env=on_path, timeout=300)
    assert unknown.returncode != 0 and "no domain 'nope' on the domain path" in unknown.stderr
    assert "(found: shop;" in unknown.stderr
