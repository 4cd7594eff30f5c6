"""The TPC-H source system: ``tpchgen-cli`` data delivered as file drops.

``orders`` and ``lineitem`` arrive as one CSV per order date (a line belongs to the day
of its order), each stamped as arriving at 18:00 UTC that day; the other six tables are
full snapshots that arrived the day before the first order. A run of the tpch domain for
date D therefore picks up every drop up to D (see ``FileExtractor``). The generated files
are kept under ``raw/``: the differential test and the benchmark read them directly.

    python -m pipelines.tpch.generate --scale 1 --home data/tpch
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

TABLES = ("region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem")
DAILY = ("orders", "lineitem")
SNAPSHOT_ARRIVAL = datetime(1991, 12, 31, 12, tzinfo=UTC)
ARRIVAL_HOUR = 18


def tpchgen() -> str:
    """The ``tpchgen-cli`` executable of this environment (a dev dependency)."""
    local = Path(sys.executable).with_name("tpchgen-cli")
    found = str(local) if local.exists() else shutil.which("tpchgen-cli")
    if not found:
        raise FileNotFoundError("tpchgen-cli is not installed: `uv sync` installs it (dev dependency)")
    return found


def generate_raw(scale: float, raw: Path) -> Path:
    """The 8 tables as CSV at ``scale``, in ``raw`` (regenerated only if missing or another scale)."""
    marker = raw / ".scale"
    if marker.exists() and marker.read_text() == str(scale) and all((raw / f"{t}.csv").exists() for t in TABLES):
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    subprocess.run([tpchgen(), "csv", "-s", str(scale), f"--output-dir={raw}"], check=True,
                   stdout=subprocess.DEVNULL)
    marker.write_text(str(scale))
    return raw


def _stamp(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def _csv(path: Path) -> str:
    return "read_csv(" + "'" + str(path).replace("'", "''") + "', all_varchar = true, header = true)"


def split_daily(raw: Path, landing: Path, threads: int | None = None) -> dict[str, int]:
    """Write one drop per order date for ``orders`` and ``lineitem`` (values as generated)."""
    counts = {}
    tmp = landing.parent / ".split"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    # a partitioned COPY keeps buffers per day and thread: capped, DuckDB spills instead of
    # taking 80% of the machine (19 GB measured at SF10 without the cap)
    con.execute("SET memory_limit = '4GB'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    try:
        selects = {
            "orders": f"SELECT *, o_orderdate AS _day FROM {_csv(raw / 'orders.csv')}",
            "lineitem": f"SELECT l.*, o.o_orderdate AS _day FROM {_csv(raw / 'lineitem.csv')} l "
                        f"JOIN (SELECT o_orderkey, o_orderdate FROM {_csv(raw / 'orders.csv')}) o "
                        "ON l.l_orderkey = o.o_orderkey",
        }
        for table, select in selects.items():
            out = tmp / table
            con.execute(f"COPY ({select}) TO '{out}' (FORMAT csv, HEADER true, PARTITION_BY (_day))")
            target = landing / table
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            n = 0
            for part in sorted(out.glob("_day=*")):
                day = date.fromisoformat(part.name.split("=", 1)[1])
                files = sorted(part.glob("*.csv"))
                drop = target / f"{table}_{day.isoformat()}.csv"
                if len(files) == 1:
                    files[0].rename(drop)
                else:  # several writer threads: one header, then every file's rows
                    with drop.open("wb") as fh:
                        for i, f in enumerate(files):
                            lines = f.read_bytes().split(b"\n", 1)
                            fh.write((lines[0] + b"\n" if i == 0 else b"") + (lines[1] if len(lines) > 1 else b""))
                _stamp(drop, datetime(day.year, day.month, day.day, ARRIVAL_HOUR, tzinfo=UTC))
                n += 1
            counts[table] = n
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def drop_snapshots(raw: Path, landing: Path) -> None:
    """Copy the six snapshot tables into their landing folders, arrived before the first order."""
    for table in TABLES:
        if table in DAILY:
            continue
        target = landing / table
        target.mkdir(parents=True, exist_ok=True)
        drop = target / f"{table}.csv"
        shutil.copyfile(raw / f"{table}.csv", drop)
        _stamp(drop, SNAPSHOT_ARRIVAL)


def generate(scale: float, home: Path) -> dict[str, object]:
    """Generate TPC-H at ``scale`` into ``home/raw`` and deliver it as drops in ``home/landing``."""
    t0 = time.perf_counter()
    raw = generate_raw(scale, home / "raw")
    landing = home / "landing"
    drop_snapshots(raw, landing)
    counts = split_daily(raw, landing)
    return {"scale": scale, "raw": str(raw), "landing": str(landing), "daily_drops": counts,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (1 = ~1 GB of CSV)")
    parser.add_argument("--home", type=Path, default=Path("data/tpch"),
                        help="raw/ and landing/ go here (landing/ is what configs/tpch reads)")
    args = parser.parse_args(argv)
    print(generate(args.scale, args.home))


if __name__ == "__main__":
    main()
