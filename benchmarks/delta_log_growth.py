"""What one Delta commit costs as a table's log grows, on local disk (a diagnostic, not in ``make bench``).

``gold.quality_checks`` takes one commit per silver entity and run plus one for the tier-3
checks: about 10 a day for retail, against one a day for most tables. This writes a table of
that shape through ``lakehouse.delta.replace_where`` (``--datasets`` commits per business date,
8 rows each) and prints the milliseconds per commit after every ``--every`` days. Then, on a
copy of the table, it deletes the log entries before the newest checkpoint (what Delta's
expired-log cleanup does once they are older than ``delta.logRetentionDuration``) and times
delta-rs' own commits on both: same files, same version, a long log and a short one.

    python -m benchmarks.delta_log_growth --days 60
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

_ENTRY = re.compile(r"^(\d{20})\.")


def _commit(where: str, day: date, dataset: int) -> None:
    import polars as pl

    from lakehouse import delta

    frame = pl.DataFrame({"check": ["rule"] * 8, "tier": [2] * 8, "failing_count": list(range(8))})
    values = {"business_date": day, "dataset": f"silver.e{dataset}"}
    delta.replace_where(frame, where, values, partition_by=list(values))


def _timed(where: str, day: date, datasets: int) -> float:
    """Milliseconds per commit of one business date's ``datasets`` commits."""
    start = time.perf_counter()
    for ds in range(datasets):
        _commit(where, day, ds)
    return (time.perf_counter() - start) / datasets * 1000


def _raw_ms(table: Path, day: date, datasets: int) -> float:
    """Milliseconds per commit of delta-rs' own predicate overwrite into an open table (no
    lakehouse wrapper: ``lakehouse.delta`` keeps a table open by its first commit's file,
    which a cut log no longer has)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    dt = DeltaTable(str(table))
    start = time.perf_counter()
    for ds in range(datasets):
        rows = pa.table({"check": ["rule"] * 8, "tier": pa.array([2] * 8, pa.int64()),
                         "failing_count": pa.array(range(8), pa.int64()),
                         "business_date": [day] * 8, "dataset": [f"silver.e{ds}"] * 8})
        write_deltalake(dt, rows, mode="overwrite",
                        predicate=f"business_date = '{day}' AND dataset = 'silver.e{ds}'")
    return (time.perf_counter() - start) / datasets * 1000


def truncate_log(table: Path) -> int:
    """Delete the log entries older than the newest checkpoint; returns how many are left."""
    log = table / "_delta_log"
    checkpoints = sorted(int(p.name[:20]) for p in log.glob("*.checkpoint.parquet"))
    for entry in log.iterdir():
        m = _ENTRY.match(entry.name)
        if m and checkpoints and int(m.group(1)) < checkpoints[-1]:
            entry.unlink()
    return sum(1 for _ in log.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--datasets", type=int, default=10, help="commits per business date")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="delta-log-growth-"))
    where = root / "gold" / "quality_checks"
    first = date(2026, 1, 1)
    try:
        print(f"{'days':>5} {'log entries':>12} {'ms/commit':>10}")
        for i in range(args.days):
            ms = _timed(str(where), first + timedelta(days=i), args.datasets)
            if (i + 1) % args.every == 0:
                entries = sum(1 for _ in (where / "_delta_log").iterdir())
                print(f"{i + 1:>5} {entries:>12} {ms:>10.1f}", flush=True)
        copy = root / "gold" / "quality_checks_short_log"
        shutil.copytree(where, copy)
        left = truncate_log(copy)
        day = first + timedelta(days=args.days)
        print(f"delta-rs alone, one open table: {_raw_ms(where, day, args.datasets):.1f} ms/commit; "
              f"its copy with the log cut before the newest checkpoint ({left} entries): "
              f"{_raw_ms(copy, day, args.datasets):.1f} ms/commit")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
