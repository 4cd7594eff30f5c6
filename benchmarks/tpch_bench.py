"""``make bench``: TPC-H through the lakehouse next to its baselines, one machine, one run.

Every measured step runs in its own Python process that reports its wall time and peak RSS,
so one step's memory never counts against another's:

- ``duckdb_copy``: DuckDB reads the 8 generated CSV files and writes Parquet (the single-pass floor);
- ``lakehouse``: the tpch domain's initial load of the daily drops, bronze -> silver -> gold -> catalog;
- ``lakehouse_lineitem_silver`` vs ``pandas_lineitem_silver``: lineitem's 2,401 drops to a typed,
  validated, deduplicated Parquet table, by the lakehouse and by a straightforward pandas script;
- the 22 queries, ``--repeats`` timed runs each after one warm-up, over the gold catalog and over
  DuckDB native tables loaded from the same files: p50 and p95 per query.

Writes ``docs/benchmarks.md`` (with the machine) and a JSON of the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
LAST_ORDER_DATE = "1998-08-02"

# Peak RSS from VmHWM (this program's own memory since exec): getrusage's ru_maxrss keeps the
# high-water mark of the forked parent through exec, so every step would report at least the
# bench's own RSS (all three steps of one run read 3,484 MB).
MEASURE = """
import json, resource, sys, time
t0 = time.perf_counter()
{body}
def _peak_mb():
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("__RESULT__" + json.dumps({{"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_mb()}}))
"""

DUCKDB_COPY = """
import duckdb
con = duckdb.connect()
for t in {tables!r}:
    con.execute(f"COPY (SELECT * FROM read_csv('{raw}/{{t}}.csv')) TO '{out}/{{t}}.parquet' (FORMAT parquet, COMPRESSION zstd)")
"""

LAKEHOUSE = """
from datetime import date
from lakehouse import bronze, catalog, gold, silver
from lakehouse.config import load_domain
cfg = load_domain("configs/tpch")
day = date.fromisoformat("{day}")
for s in cfg.sources:
    bronze.ingest(cfg, s.name, day, "bench")
for c in cfg.contracts:
    silver.stage(cfg, c.entity, day, "bench")
    silver.build(cfg, c.entity)
gold.build_all(cfg, day)
catalog.build_catalog(cfg)
"""

LAKEHOUSE_LINEITEM = """
from datetime import date
from lakehouse import bronze, silver
from lakehouse.config import load_domain
cfg = load_domain("configs/tpch")
day = date.fromisoformat("{day}")
bronze.ingest(cfg, "lineitem_drop", day, "bench")
silver.stage(cfg, "lineitem", day, "bench")
silver.build(cfg, "lineitem")
"""

# The naive peer: what a pandas script doing the same job looks like (read every drop, type,
# check the contract's ranges, keep the latest row per key, write Parquet).
PANDAS_LINEITEM = """
import glob
import pandas as pd
files = sorted(glob.glob("{landing}/lineitem/*.csv"))
df = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False).assign(_source=f) for f in files], ignore_index=True)
for c in ["l_orderkey", "l_partkey", "l_suppkey", "l_linenumber"]:
    df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
for c in ["l_quantity", "l_extendedprice", "l_discount", "l_tax"]:
    df[c] = pd.to_numeric(df[c], errors="coerce")
for c in ["l_shipdate", "l_commitdate", "l_receiptdate"]:
    df[c] = pd.to_datetime(df[c], format="%Y-%m-%d", errors="coerce")
ok = (df["l_quantity"].between(1, 50) & df["l_discount"].between(0, 0.1) & df["l_tax"].between(0, 0.08)
      & df["l_returnflag"].isin(["A", "N", "R"]) & df["l_linestatus"].isin(["F", "O"])
      & (df["l_receiptdate"] >= df["l_shipdate"]) & df[["l_orderkey", "l_linenumber"]].notna().all(axis=1))
df[~ok].to_parquet("{out}/pandas_quarantine.parquet")
df = df[ok].sort_values(["l_orderkey", "l_linenumber", "_source"]).drop_duplicates(["l_orderkey", "l_linenumber"], keep="last")
df.to_parquet("{out}/pandas_lineitem.parquet", index=False)
"""


def measure(name: str, body: str, env: dict[str, str] | None = None) -> dict:
    """Run ``body`` in a fresh interpreter; its wall time and peak RSS, plus what ``body`` printed
    after ``__EXTRA__`` (a JSON object, merged in)."""
    code = MEASURE.format(body=textwrap.indent(textwrap.dedent(body), ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env={**os.environ, **(env or {})},
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.rsplit("__RESULT__", 1)[1])
    if "__EXTRA__" in out.stdout:
        result |= json.loads(out.stdout.split("__EXTRA__", 1)[1].split("\n", 1)[0])
    print(f"  {name:28s} {result['seconds']:8.1f} s   peak RSS {result['peak_rss_mb']:8.0f} MB", flush=True)
    return result


def append_section(figures: object, section: str, out: Path, doc: Path) -> None:
    """Save a bench's raw figures as JSON and append its section to ``docs/benchmarks.md``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    with doc.open("a") as fh:
        fh.write("\n" + section)
    print(f"appended to {doc}; {out}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_queries(catalogs: dict[str, Path], raw: Path, repeats: int) -> dict[int, dict[str, float]]:
    """p50/p95 of each query over each catalog and over DuckDB native tables (interleaved)."""
    import duckdb

    from pipelines.tpch.queries import catalog_connection, native_tables, queries, same_rows

    cons = {kind: catalog_connection(path) for kind, path in catalogs.items()}
    cons["native"] = native_tables(duckdb.connect(), raw)
    out = {}
    for number, sql in queries().items():
        times: dict[str, list[float]] = {kind: [] for kind in cons}
        for i in range(repeats + 1):
            for kind, con in cons.items():
                t0 = time.perf_counter()
                rows = con.execute(sql).fetchall()
                if i:  # the first run of each warms caches
                    times[kind].append(time.perf_counter() - t0)
                elif kind == "gold":
                    gold_rows = rows
                else:
                    assert same_rows(gold_rows, rows) is None, f"Q{number} {kind}: {same_rows(gold_rows, rows)}"
        out[number] = {f"{k}_{p}": _pct(v, q) for k, v in times.items() for p, q in (("p50", 0.5), ("p95", 0.95))}
        print(f"  Q{number:02d} p50 " + "   ".join(f"{k} {out[number][f'{k}_p50'] * 1000:7.1f} ms" for k in cons),
              flush=True)
    return out


def machine() -> dict[str, str]:
    import duckdb
    import polars

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gb": str(mem), "os": platform.platform(),
            "python": platform.python_version(), "polars": polars.__version__, "duckdb": duckdb.__version__}


def run(scale: float, work: Path, repeats: int) -> dict:
    from pipelines.tpch.generate import TABLES, generate

    work.mkdir(parents=True, exist_ok=True)
    print(f"TPC-H SF{scale:g}: generating drops in {work / 'source'}", flush=True)
    source = generate(scale, work / "source")
    raw, landing = Path(source["raw"]), Path(source["landing"])
    results: dict[str, dict] = {}
    copy_dir = work / "duckdb_copy"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    results["duckdb_copy"] = measure("duckdb_copy", DUCKDB_COPY.format(tables=TABLES, raw=raw, out=copy_dir))
    home = work / "lakehouse"
    shutil.rmtree(home, ignore_errors=True)
    env = {"LAKEHOUSE_HOME": str(home), "TPCH_LANDING_DIR": str(landing), "TPCH_START_DATE": LAST_ORDER_DATE}
    results["lakehouse"] = measure("lakehouse bronze->gold", LAKEHOUSE.format(day=LAST_ORDER_DATE), env)
    lineitem_home = work / "lakehouse_lineitem"
    shutil.rmtree(lineitem_home, ignore_errors=True)
    results["lakehouse_lineitem_silver"] = measure(
        "lakehouse lineitem->silver", LAKEHOUSE_LINEITEM.format(day=LAST_ORDER_DATE),
        env | {"LAKEHOUSE_HOME": str(lineitem_home)})
    try:
        results["pandas_lineitem_silver"] = measure("pandas lineitem->silver",
                                                    PANDAS_LINEITEM.format(landing=landing, out=work))
    except RuntimeError as exc:  # at SF10 the naive peer holds ~60 M rows of text: it may not fit
        print(f"  pandas lineitem->silver did not finish: {str(exc)[:300]}", flush=True)
        results["pandas_lineitem_silver"] = {"failed": str(exc).splitlines()[-1][:200] if str(exc) else "killed"}
    print(f"22 queries, {repeats} timed runs each", flush=True)
    os.environ.update(env)
    from lakehouse.catalog import build_catalog
    from lakehouse.config import load_domain

    cfg = load_domain(PROJECT / "configs" / "tpch")
    # the same gold, every table a view over its Parquet files: what serve: table buys
    as_views = cfg.model_copy(update={"gold": [g.model_copy(update={"serve": "view"}) for g in cfg.gold]})
    views_catalog = build_catalog(as_views, Path(cfg.catalog_path).with_name("views_only.duckdb"))
    queries = time_queries({"gold": Path(cfg.catalog_path), "parquet": views_catalog}, raw, repeats)
    files = sum(1 for _ in Path(cfg.lake_root, "gold").rglob("*.parquet"))
    return {"scale": scale, "machine": machine(), "steps": results, "queries": queries,
            "gold_files": files, "daily_drops": source["daily_drops"],
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}


def report(figures: dict) -> str:
    s, q = figures["steps"], figures["queries"]
    floor = s["duckdb_copy"]["seconds"]
    p95_ratio = [v["gold_p95"] / v["native_p95"] for v in q.values()]
    parquet_ratio = [v["parquet_p95"] / v["native_p95"] for v in q.values()]
    lines = [
        f"# Benchmarks: TPC-H SF{figures['scale']:g}",
        "",
        f"Measured by `make bench` on {figures['measured_at']}. Machine: {figures['machine']['cpu']}, "
        f"{figures['machine']['cores']} cores, {figures['machine']['memory_gb']} GB; "
        f"Python {figures['machine']['python']}, Polars {figures['machine']['polars']}, "
        f"DuckDB {figures['machine']['duckdb']}. Each step runs in its own process; ratios compare "
        "figures of the same run. Numbers from another machine or run are not comparable.",
        "",
        f"Source: `tpchgen-cli` output delivered as {figures['daily_drops']['orders']} daily drops each "
        "of orders and lineitem plus 6 snapshot files (`pipelines/tpch/generate.py`).",
        "",
        "## End to end",
        "",
        "| step | wall (s) | peak RSS (MB) | vs DuckDB copy |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("duckdb_copy", "DuckDB CSV -> Parquet copy of the 8 generated files (floor)"),
                        ("lakehouse", "lakehouse: drops -> bronze -> silver -> gold -> catalog"),
                        ("lakehouse_lineitem_silver", "lakehouse: lineitem drops -> bronze -> silver"),
                        ("pandas_lineitem_silver", "pandas: lineitem drops -> typed, checked, deduplicated Parquet")):
        r = s[name]
        if "failed" in r:
            lines.append(f"| {label} | did not finish: {r['failed']} | | |")
            continue
        lines.append(f"| {label} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['seconds'] / floor:.2f}x |")
    peer = s["pandas_lineitem_silver"]
    versus = (f"the lakehouse is **{peer['seconds'] / s['lakehouse_lineitem_silver']['seconds']:.2f}x** as fast "
              "as the pandas peer" if "failed" not in peer else "the pandas peer did not finish")
    lines += [
        "",
        f"- End to end: **{s['lakehouse']['seconds'] / floor:.2f}x** the DuckDB copy (target: at most 3x).",
        f"- Lineitem bronze -> silver: {versus} "
        "(target: at least 5x), while also hashing lineage, keeping an immutable bronze copy and "
        "recording quality history.",
        "",
        f"## The 22 queries over gold vs DuckDB native tables ({figures['gold_files']} gold Parquet files)",
        "",
        "*gold*: the catalog as configured (`configs/tpch/gold.yaml`: the tables behind the tpch views "
        "are `serve: table`, loaded into the catalog at each build); *parquet*: the same gold with "
        "every table a view over its snappy Parquet files; *native*: DuckDB tables loaded straight "
        "from the generated CSV files.",
        "",
        "| query | gold p50 (ms) | gold p95 (ms) | parquet p50 (ms) | parquet p95 (ms) | native p50 (ms) "
        "| native p95 (ms) | gold/native p95 | parquet/native p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, v in q.items():
        lines.append(f"| Q{n:02d} | {v['gold_p50'] * 1000:.1f} | {v['gold_p95'] * 1000:.1f} | "
                     f"{v['parquet_p50'] * 1000:.1f} | {v['parquet_p95'] * 1000:.1f} | "
                     f"{v['native_p50'] * 1000:.1f} | {v['native_p95'] * 1000:.1f} | "
                     f"{v['gold_p95'] / v['native_p95']:.2f} | {v['parquet_p95'] / v['native_p95']:.2f} |")
    lines += [
        "",
        f"- gold (as served) / native p95: geometric mean **{statistics.geometric_mean(p95_ratio):.2f}x**, "
        f"worst {max(p95_ratio):.2f}x (target: at most 1.5x).",
        f"- Parquet views / native p95: geometric mean **{statistics.geometric_mean(parquet_ratio):.2f}x**, "
        f"worst {max(parquet_ratio):.2f}x.",
        "- Every answer of every configuration was checked equal to the native one in the warm-up run.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (SF10 when asked)")
    parser.add_argument("--work", type=Path, default=PROJECT / "data" / "bench" / "tpch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=PROJECT / "data" / "bench_tpch.json")
    parser.add_argument("--doc", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    figures = run(args.scale, args.work / f"sf{args.scale:g}", args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    args.doc.write_text(report(figures))
    print(f"wrote {args.doc} and {args.out}")


if __name__ == "__main__":
    main()
