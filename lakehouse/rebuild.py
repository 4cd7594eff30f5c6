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

from lakehouse import gold, quality, silver, steps, storage
from lakehouse.bronze import bronze_table
from lakehouse.config import DomainConfig

log = logging.getLogger(__name__)


def rebuild(cfg: DomainConfig, run_id: str = "rebuild") -> dict[str, int]:
    """Rebuild silver and gold from every bronze partition; returns rows per silver entity.

    Every bronze batch but the newest date's is re-staged first; then the daily pipeline's
    own steps from silver to the catalog (``steps.REBUILD_STEPS``) run for the newest date,
    which stages its batch and builds silver, gold and the catalog from everything staged.
    """
    gold.forget_consumed(cfg)  # the oracle recomputes every gold partition
    days = sorted({date.fromisoformat(p["ingest_date"]) for c in cfg.contracts
                   for p in storage.partitions(cfg.lake, "bronze", bronze_table(c.source, c.entity))})
    if not days:
        return {c.entity: silver.build(cfg, c.entity) for c in cfg.contracts}
    for contract in cfg.contracts:
        table = bronze_table(contract.source, contract.entity)
        for part in storage.partitions(cfg.lake, "bronze", table):
            day = date.fromisoformat(part["ingest_date"])
            if day != days[-1]:
                silver.stage(cfg, contract.entity, day, run_id)
    quality.publish_held(cfg)  # every earlier day's check results in one commit
    ctx = steps.RunContext(cfg=cfg, run_date=days[-1], run_id=run_id)
    outcomes = steps.run_local(steps.DAILY, ctx, only=steps.REBUILD_STEPS)
    rows = {c.entity: outcomes[f"silver_{c.entity}"].result["silver_rows"] for c in cfg.contracts}
    log.info("rebuilt silver and gold from bronze: %s", rows)
    return rows
