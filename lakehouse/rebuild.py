"""Full refresh: regenerate silver and gold from bronze alone.

Bronze is the system of record, so every layer above it can be rebuilt at any time:
each bronze batch is re-validated into its ``stg_`` and quarantine partitions, each
silver entity is rebuilt from those, then gold and the catalog. Every write is the
usual atomic partition publish, so readers keep working during a rebuild. ML outputs
(``gold.ml_models``, ``gold.fct_demand_forecast``) and tier-3 quality verdicts (a record
of what the checks saw on the day they ran) are not derived from bronze alone and are
left as they are; the tier-1 and tier-2 rows of ``gold.quality_checks`` are re-recorded.
"""

from __future__ import annotations

import logging
from datetime import date

from lakehouse import catalog, gold, silver, storage
from lakehouse.bronze import bronze_table
from lakehouse.config import DomainConfig

log = logging.getLogger(__name__)


def rebuild(cfg: DomainConfig, run_id: str = "rebuild") -> dict[str, int]:
    """Rebuild silver and gold from every bronze partition; returns rows per silver entity."""
    latest: date | None = None
    rows: dict[str, int] = {}
    for contract in cfg.contracts:
        table = bronze_table(contract.source, contract.entity)
        for part in storage.partitions(cfg.lake, "bronze", table):
            day = date.fromisoformat(part["ingest_date"])
            silver.stage(cfg, contract.entity, day, run_id)
            latest = max(latest or day, day)
        rows[contract.entity] = silver.build(cfg, contract.entity)
    if latest is not None:
        gold.build_all(cfg, latest)
        catalog.build_catalog(cfg)
    log.info("rebuilt silver and gold from bronze: %s", rows)
    return rows
