"""What on-call reads after a bad day: every number ``lakehouse status`` prints and the
dashboard's headline numbers, on a lake with a failed run, its rerun and a backfilled day, equal
the same numbers computed independently: plain Python over the run history's JSON files and the
lake's folders, and DuckDB over the catalog the analysts query."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests
import sqlalchemy as sa

from lakehouse import report, status, storage
from lakehouse.cli import main
from tests.conftest import START

DAYS = [START, START + timedelta(days=1), START + timedelta(days=2)]


def cli_run(day) -> int:
    try:
        main(["--domain", "retail", "run", "--date", day.isoformat()])
    except SystemExit as exc:
        return 0 if exc.code in (None, 0) else 1  # a message exits 1
    return 0


def runs_from_json(lake: Path) -> dict[str, dict]:
    """Each run's state, tasks, failures and seconds, from the raw task records."""
    runs: dict[str, list[dict]] = {}
    for path in (lake / "_state" / "runs").rglob("*.json"):
        entry = json.loads(path.read_text())
        runs.setdefault(entry["run_id"], []).append(entry)
    out = {}
    for run_id, tries in runs.items():
        final = {}
        for t in sorted(tries, key=lambda t: t["end"]):
            final[t["task_id"]] = t["state"]
        starts = [datetime.fromisoformat(t["start"]) for t in tries]
        ends = [datetime.fromisoformat(t["end"]) for t in tries]
        failed = sum(s == "failed" for s in final.values())
        out[run_id] = {"date": tries[0]["business_date"], "tasks": len(final), "failed": failed,
                       "state": "failed" if failed else "success",
                       "seconds": (max(ends) - min(starts)).total_seconds()}
    return out


@pytest.mark.timeout(900)
def test_every_number_status_prints_equals_an_independent_computation(tiny):
    cfg = tiny.cfg
    tiny.advance(DAYS[1])
    assert cli_run(DAYS[0]) == 0
    # the supplier API refuses every call (a 400 is not retried): the day fails at extraction
    requests.post(f"{tiny.api_url}/_control", json={"fail_next": 10_000, "status": 400}, timeout=5)
    assert cli_run(DAYS[1]) == 1
    requests.post(f"{tiny.api_url}/_control", json={"fail_next": 0}, timeout=5)
    assert cli_run(DAYS[1]) == 0  # the rerun after the fix
    tiny.advance(DAYS[2])
    engine = sa.create_engine(cfg.source("erp").url)
    with engine.begin() as conn:  # two lines keyed wrong on the last day: its batch rejects them
        conn.execute(sa.text("UPDATE order_lines SET quantity = -4 WHERE order_line_id IN (SELECT order_line_id "
                             "FROM order_lines WHERE updated_at >= :d ORDER BY order_line_id LIMIT 2)"),
                     {"d": DAYS[2].isoformat()})
    assert cli_run(DAYS[2]) == 0
    assert cli_run(DAYS[0]) == 0  # a backfill of the first day, with the sources as they stand now

    text = status.render(cfg, as_of=DAYS[2])
    section = text.split("last runs:")[1].split("freshness")[0]
    expected = runs_from_json(cfg.lake)
    assert len(expected) == 5 and sum(r["state"] == "failed" for r in expected.values()) == 1
    shown = re.findall(r"(retail_daily)\s+(\S+)\s+(\w+)\s+([\d.]+) s\s+(\d+) tasks, (\d+) retries, (\d+) failed"
                       r".*\((\S+)\)", section)
    assert len(shown) == 5
    for _, day, state, seconds, tasks, retries, failed, run_id in shown:
        want = expected[run_id]
        assert (day, state, int(tasks), int(failed), int(retries)) == (
            want["date"], want["state"], want["tasks"], want["failed"], 0), run_id
        assert float(seconds) == pytest.approx(want["seconds"], abs=0.06), run_id

    with duckdb.connect(str(cfg.catalog_path), read_only=True) as con:
        q = con.execute
        # every table's rows and latest business date
        table_lines = re.findall(r"^(\w+)\.(\w+)\s+([\d,]+)\s+(\d+)\s+(\S+)\s+[\d.]+ h$", text, re.M)
        assert len(table_lines) > 20
        checked = 0
        for layer, table, rows, _parts, latest in table_lines:
            if not q("SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
                     [layer, table]).fetchone()[0]:
                continue  # not served (e.g. staging batches)
            assert int(rows.replace(",", "")) == q(f"SELECT count(*) FROM {layer}.{table}").fetchone()[0], table
            column = next((g.partition_by for g in cfg.gold if g.name == table), None) if layer == "gold" else None
            if column and latest != "-":
                assert latest == str(q(f"SELECT max({column}) FROM gold.{table}").fetchone()[0]), table
            checked += 1
        assert checked > 15
        # freshness: each table's newest date and its lag behind the as-of date
        fresh_lines = re.findall(r"^  (?:OK   |STALE) (\S+)\s+newest (\S+)\s+lag\s+(\S+) d", text, re.M)
        assert {t for t, _, _ in fresh_lines} == {f.table for f in cfg.freshness}
        for table, newest, lag in fresh_lines:
            layer, name = table.split(".")
            column = next((g.partition_by for g in cfg.gold if g.name == name), None) or "ingest_date"
            got = q(f"SELECT max({column})::DATE FROM {table}" if layer == "gold" else
                    f"SELECT max({column})::DATE FROM read_parquet('{storage.table_dir(cfg.lake, layer, name)}"
                    "/**/*.parquet', hive_partitioning = true)").fetchone()[0]
            assert newest == str(got) and int(lag) == (DAYS[2] - got).days, table
        # quarantine by entity and rule: each rejected record once, however often lookbacks re-read it
        shown_q = {(e, r): int(n.replace(",", "")) for e, r, n in re.findall(
            r"^  (\w+)\s+(\S+)\s+([\d,]+) total", text.split("quarantine (rejected rows)")[1], re.M)}
        assert shown_q == {(e, r): n for e, r, n in q(
            "SELECT entity, rule, count(*) FROM silver.quarantine GROUP BY ALL").fetchall()}
        assert sum(shown_q.values()) > 0
        # quality checks of the latest business date, per dataset
        shown_c = {d: int(n) for _, d, n in re.findall(r"^  (\S+)\s+(\S+)\s+(\d+) checks", text.split(
            "quality checks on the latest business date")[1], re.M)}
        assert shown_c == dict(q("""SELECT dataset, count(*) FROM gold.quality_checks
                                    WHERE business_date = (SELECT max(business_date) FROM gold.quality_checks)
                                    GROUP BY ALL""").fetchall())
        # the dashboard's headline numbers
        latest_staged = max(p.name.split("=")[1] for p in (cfg.lake / "silver").glob("stg_*/ingest_date=*"))
        newly = q("SELECT count(*) FROM silver.quarantine WHERE ingest_date::VARCHAR = ?", [latest_staged]).fetchone()[0]
    stale = len(re.findall(r"^  STALE ", text, re.M))
    page = report.render(cfg, as_of=DAYS[2])
    kpis = dict(re.findall(r'<div class="kpi[^"]*">([^<]+)<b>([^<]+)</b></div>', page))
    assert kpis == {
        "daily runs recorded": str(len(expected)),
        "failed daily runs": str(sum(r["state"] == "failed" for r in expected.values())),
        "retries": "0",
        "stale tables": f"{stale} / {len(cfg.freshness)}",
        f"rows newly rejected ({latest_staged})": str(newly),
    }, kpis
    assert newly > 0, "the latest batch rejected something: a number that can be wrong"
