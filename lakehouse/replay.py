"""Quarantine replay: re-validate rejected rows and promote those that now pass, exactly once.

After a contract change (a new allowed value, a wider range) or an upstream fix, the rows
quarantined since a date are re-typed and re-validated from their kept raw record with
the current contract. Rows that pass move to the staged batch they came from
(``silver/stg_<entity>/ingest_date=D``) and leave quarantine; the entity's silver table is
rebuilt from the staged batches.

Exactly once: a batch is appended to first, skipping any ``_record_hash`` it already
holds, and quarantine is rewritten second. A replay killed between the two leaves rows in
both places; the next replay finds them valid again, skips them in the batch and removes
them from quarantine. A promoted row whose version key the batch already holds stays in
quarantine (rule ``replay_duplicate``): promoting it would duplicate a version.
"""

from __future__ import annotations

import json
import logging
from datetime import date

import polars as pl

from lakehouse import silver, storage
from lakehouse.config import DomainConfig

log = logging.getLogger(__name__)


def records_frame(quarantined: pl.DataFrame) -> pl.DataFrame:
    """Pure: quarantined rows -> the raw batch they came from (all values as text, lineage kept)."""
    def text(value: object) -> str | None:
        return value if value is None or isinstance(value, str) else json.dumps(value)

    records = [{k: text(v) for k, v in json.loads(r).items()} for r in quarantined["record"]]
    columns = list(dict.fromkeys(k for r in records for k in r))
    raw = pl.DataFrame(records, schema=dict.fromkeys(columns, pl.String), orient="row") if records else \
        pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return raw.with_columns(quarantined["source_pointer"].alias("_source_pointer"),
                            quarantined["record_hash"].alias("_record_hash"))


def _replay_batch(cfg: DomainConfig, entity: str, ingest_date: str, run_id: str) -> dict[str, int]:
    contract = cfg.contract(entity)
    qpart = {"entity": entity, "ingest_date": ingest_date}
    quarantined = storage.read(cfg.lake, "silver", silver.QUARANTINE, qpart)
    if quarantined is None or quarantined.is_empty():
        return {"replayed": 0, "promoted": 0}
    raw = records_frame(quarantined)
    where = f"silver.quarantine entity={entity} ingest_date={ingest_date}"
    source = cfg.source_of(contract)
    typed, parse_failures = silver.type_batch(raw, contract, where=where, source=source)
    valid, _ = silver.split_valid(typed, parse_failures, contract)
    spart = {"ingest_date": ingest_date}
    stg = silver.stg_table(entity)
    batch = storage.read(cfg.lake, "silver", stg, spart)
    keep = [c.name for c in contract.columns] + ["_source_pointer", "_record_hash"]
    valid = valid.select(keep)
    already = valid.join(batch.select("_record_hash"), on="_record_hash", how="semi") \
        if batch is not None else valid.clear()  # promoted by a replay that was cut off
    fresh = valid.join(already.select("_record_hash"), on="_record_hash", how="anti")
    if batch is not None and fresh.height:
        version = [*contract.primary_key, *([contract.updated_at] if contract.updated_at else [])]
        clash = fresh.join(batch.select(version), on=version, how="semi", nulls_equal=True)
        fresh = fresh.join(clash.select("_record_hash"), on="_record_hash", how="anti")
    else:
        clash = valid.clear()
    if fresh.height:
        merged = fresh if batch is None else pl.concat([batch, fresh], how="diagonal_relaxed")
        storage.publish(merged.select(batch.columns if batch is not None else fresh.columns),
                        cfg.lake, "silver", stg, spart)
    promoted = pl.concat([already.select("_record_hash"), fresh.select("_record_hash")])
    remaining = quarantined.join(promoted, left_on="record_hash", right_on="_record_hash", how="anti")
    remaining = remaining.with_columns(
        pl.when(pl.col("record_hash").is_in(clash["_record_hash"].implode()))
        .then(pl.lit("replay_duplicate")).otherwise(pl.col("rule")).alias("rule"))
    if promoted.height or clash.height:
        storage.publish(remaining, cfg.lake, "silver", silver.QUARANTINE, qpart)
    log.info("%s: %d replayed, %d promoted, %d still quarantined", where, quarantined.height,
             promoted.height, remaining.height)
    return {"replayed": quarantined.height, "promoted": promoted.height}


def replay(cfg: DomainConfig, entity: str, since: date, run_id: str = "replay") -> dict[str, object]:
    """Replay ``entity``'s quarantine from ``since`` on; rebuild its silver table if rows moved."""
    cfg.contract(entity)  # an unknown entity fails here, before anything is touched
    days = sorted(p["ingest_date"] for p in storage.partitions(cfg.lake, "silver", silver.QUARANTINE)
                  if p.get("entity") == entity and p["ingest_date"] >= since.isoformat())
    per_day: dict[str, dict[str, int]] = {}
    # the daily task stages and builds this entity under the same lock
    with storage.locked(cfg.lake, f"silver_{entity}"):
        for day in days:
            per_day[day] = _replay_batch(cfg, entity, day, run_id)
        promoted = sum(d["promoted"] for d in per_day.values())
        rows = silver.build(cfg, entity) if promoted else storage.row_count(cfg.lake, "silver", entity)
    return {"entity": entity, "batches": len(days), "promoted": promoted,
            "replayed": sum(d["replayed"] for d in per_day.values()), "silver_rows": rows, "per_day": per_day}
