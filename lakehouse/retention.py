"""Retention: expire old raw batches and rejects, then vacuum files nobody can still be reading.

Expiry is by business date (the run's date minus the configured days), so it is
reproducible and independent of the wall clock. An expired partition is retired
(hidden, still readable by queries that already opened it) and deleted by ``vacuum``
after ``grace_hours``, the same two-step contract as Delta Lake's VACUUM.

Silver history does not depend on retained bronze: each batch's validated
``stg_`` partition is kept, so silver and gold stay complete, and ``rebuild``
re-validates whatever bronze is still retained.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from lakehouse import storage
from lakehouse.config import DomainConfig
from lakehouse.silver import QUARANTINE

log = logging.getLogger(__name__)


def expired_partitions(cfg: DomainConfig, run_date: date) -> list[tuple[str, str, dict[str, str]]]:
    """(layer, table, partition) of every partition older than its retention, as of ``run_date``."""
    rules = []
    if cfg.retention.bronze_days:
        rules += [("bronze", t, run_date - timedelta(days=cfg.retention.bronze_days))
                  for t in storage.tables(cfg.lake, "bronze")]
    if cfg.retention.quarantine_days:
        rules.append(("silver", QUARANTINE, run_date - timedelta(days=cfg.retention.quarantine_days)))
    out = []
    for layer, table, before in rules:
        for part in storage.partitions(cfg.lake, layer, table):
            if "ingest_date" in part and date.fromisoformat(part["ingest_date"]) < before:
                out.append((layer, table, part))
    return out


# The business dates whose retention also deletes the files no Delta commit named (a killed
# writer's, a conflict loser's): finding them lists every file of every Delta table, a cost that
# grows with history, for files that are rare and harm nobody meanwhile (ADR 0032)
FULL_VACUUM_WEEKDAY = 6  # Sunday


def apply_retention(cfg: DomainConfig, run_date: date) -> dict[str, int | bool]:
    """Retire expired partitions, then delete retired files older than the grace period; on
    ``FULL_VACUUM_WEEKDAY``'s runs, also the files no Delta commit named."""
    expired = expired_partitions(cfg, run_date)
    for layer, table, part in expired:
        storage.drop_partition(cfg.lake, layer, table, part)
    full = run_date.weekday() == FULL_VACUUM_WEEKDAY
    removed = storage.vacuum(cfg.lake, cfg.retention.grace_hours, full=full)
    log.info("retention as of %s: %d partitions retired, %d old files deleted%s", run_date, len(expired),
             len(removed), " (full vacuum)" if full else "")
    return {"retired": len(expired), "deleted": len(removed), "full_vacuum": full}
