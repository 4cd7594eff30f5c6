"""Bronze: raw rows exactly as extracted, one immutable partition per ingest date.

``bronze/<source>__<entity>/ingest_date=YYYY-MM-DD/data.parquet`` with lineage
columns. Bronze is the system of record for what a source said on a day, so a
rerun of a date whose bronze partitions exist does not re-extract (the source may
have moved on since) unless forced; everything above bronze can be rebuilt from it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from lakehouse import storage
from lakehouse.config import DatabaseSource, DomainConfig, FileSource, RestSource
from lakehouse.extract import Extracted, Window, build_extractor
from lakehouse.parsing import Parsing, column_parsing, parse_expr

log = logging.getLogger(__name__)
LINEAGE = ["_ingested_at", "_run_id", "_source", "_source_pointer", "_record_hash"]


def bronze_table(source: str, entity: str) -> str:
    return f"{source}__{entity}"


def entities_of(source: DatabaseSource | RestSource | FileSource) -> list[str]:
    if isinstance(source, DatabaseSource):
        return [e.entity for e in source.entities]
    return [source.entity]


def day_bounds_utc(day: date, tz: str) -> tuple[datetime, datetime]:
    """Start and end of a business day in ``tz`` as naive UTC (DST days are 23 or 25 h)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(), zone).astimezone(UTC).replace(tzinfo=None)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC).replace(tzinfo=None)
    return start, end


def extraction_window(cfg: DomainConfig, source: DatabaseSource | RestSource | FileSource,
                      run_date: date, watermark: datetime | None) -> Window:
    """Which change times a run extracts.

    The start date's run is the initial (full) load. Later runs take their day plus
    ``lookback_days`` before it, catching commits that landed late. ``watermark`` is
    the end of the furthest window extracted so far; if it shows a gap longer than
    the lookback (runs were missed), the window widens back to it.
    Only the gap case depends on state, so reruns and out-of-order backfills of
    ordinary days extract the same rows.
    """
    start, end = day_bounds_utc(run_date, cfg.timezone)
    if run_date <= cfg.start_date:
        return Window(None, end)
    lookback_start = start - timedelta(days=source.lookback_days)
    if watermark is not None and watermark < lookback_start:
        log.warning("%s: watermark %s is older than the lookback; widening the window", source.name,
                    watermark)
        return Window(watermark, end)
    return Window(lookback_start, end)


def _watermark_path(cfg: DomainConfig, source: str):
    return storage.state_path(cfg.lake, "watermarks", f"{source}.json")


def _registry_path(cfg: DomainConfig, source: str):
    return storage.state_path(cfg.lake, "processed_files", f"{source}.json")


def with_lineage(chunk: Extracted, *, source: str, run_id: str, ingested_at: datetime) -> pl.DataFrame:
    """Add lineage columns; ``_record_hash`` is an MD5 of the raw row (stable across versions)."""
    frame = chunk.frame
    data_cols = [c for c in frame.columns if c not in ("_row", "_source_pointer")]
    if frame.height == 0 or not data_cols:
        hashed = frame.with_columns(_record_hash=pl.lit(None, pl.String))
    else:
        rel = frame.select(data_cols)  # noqa: F841 - referenced by name in the SQL below
        hashes = duckdb.sql("SELECT md5(to_json(t)::VARCHAR) AS h FROM rel t").pl()["h"]
        hashed = frame.with_columns(_record_hash=hashes)
    return hashed.with_columns(
        _ingested_at=pl.lit(ingested_at, pl.Datetime("us", "UTC")),
        _run_id=pl.lit(run_id),
        _source=pl.lit(source),
        _source_pointer=chunk.pointer if frame.height else pl.lit(None, pl.String),
    ).drop("_row", strict=False)


def ingest(cfg: DomainConfig, source_name: str, run_date: date, run_id: str, *,
           force: bool = False) -> dict[str, int | str]:
    """Extract one source for ``run_date`` into bronze; returns rows per bronze table.

    Watermarks and the processed-file registry live in the lake and advance only
    after every partition of the source has been published.
    """
    source = cfg.source(source_name)
    part = {"ingest_date": run_date.isoformat()}
    tables = [bronze_table(source.name, e) for e in entities_of(source)]
    if not force and all(storage.exists(cfg.lake, "bronze", t, part) for t in tables):
        log.info("bronze for %s on %s exists and is immutable; not re-extracting", source.name, run_date)
        return {"skipped": "bronze partition exists"}
    with storage.locked(cfg.lake, f"ingest__{source.name}"):
        state = storage.read_json(_watermark_path(cfg, source.name), {})
        marks: dict[str, str] = state.get("max_updated_at", {})
        registry = storage.read_json(_registry_path(cfg, source.name), {})
        until = state.get("extracted_until")
        window = extraction_window(cfg, source, run_date, datetime.fromisoformat(until) if until else None)
        extractor = build_extractor(source, registry=registry, ingest_date=part["ingest_date"])
        now = datetime.now(UTC)
        counts: dict[str, int | str] = {}
        new_files: list[dict] = []
        day_start = day_bounds_utc(run_date, cfg.timezone)[0]
        new_rows = 0
        # groupby hands out each entity's chunks lazily: one batch in memory at a time
        for entity, chunks in itertools.groupby(extractor.extract(window), key=lambda c: c.entity):
            table = bronze_table(source.name, entity)
            frames = _bronze_frames(chunks, source, run_id, now, new_files)
            counts[table] = storage.publish_batches(frames, cfg.lake, "bronze", table, part)
            top = pl.scan_parquet(storage.data_file(cfg.lake, "bronze", table, part))
            new_rows += rows_changed_since(top, day_start, _updated_at_parsing(cfg, source, entity))
            if "updated_at" in top.collect_schema().names():
                latest = top.select(pl.col("updated_at").max()).collect().item()
                if latest is not None and (entity not in marks or str(latest) > marks[entity]):
                    marks[entity] = str(latest)
        for f in new_files:
            registry[f["name"]] = {"sha256": f["sha256"], "ingest_date": f["ingest_date"]}
        set_aside = _keep_set_aside(cfg, source.name, getattr(extractor, "set_aside", []), registry)
        until = max(filter(None, [until, window.end.isoformat()]))
        storage.write_json(_watermark_path(cfg, source.name),
                           {"extracted_until": until, "max_updated_at": marks})
        storage.write_json(_registry_path(cfg, source.name), registry)
    counts["window_start"] = str(window.start)
    counts["window_end"] = str(window.end)
    later = getattr(extractor, "left_for_later", [])
    if later:
        log.info("%s: %d file(s) arrived after the window's end (%s UTC), left for a later day: %s", source.name,
                 len(later), window.end, ", ".join(f"{f['name']} ({f['arrived_utc']})" for f in later))
        counts["left_for_later"] = [f"{f['name']} (arrived {f['arrived_utc']} UTC)" for f in later]
    if isinstance(source, FileSource):
        _alert_set_aside(cfg, source.name, run_date, set_aside)
    if source.min_new_rows and run_date > cfg.start_date:
        counts["new_rows"] = new_rows
        _expect_new_rows(cfg, source, run_date, new_rows)
        if new_rows < source.min_new_rows:
            counts["below_expected_rows"] = (f"{new_rows:,} new rows on {run_date}, expected at least "
                                             f"{source.min_new_rows:,} (min_new_rows)")
    if set_aside:
        counts["set_aside"] = [f"{f['name']}: {f['reason']}" for f in set_aside]
    return counts


def rows_changed_since(batch: pl.LazyFrame, since: datetime, parsing: Parsing | None = None) -> int:
    """Rows of a bronze batch that are new on the business date: those whose ``updated_at``,
    read as silver reads it (``parsing``: the contract column's format and zone), is at or after
    ``since`` (naive UTC); every row when the batch has no ``updated_at`` (a file drop: the
    registry already keeps old files out). A lookback window re-reads earlier days, so the
    batch's size alone would hide a source that stopped."""
    schema = batch.collect_schema()
    if "updated_at" not in schema:
        return batch.select(pl.len()).collect().item()
    changed = parse_expr(pl.col("updated_at"), schema["updated_at"], pl.Datetime("us"), parsing or Parsing())
    return batch.filter(changed >= since).select(pl.len()).collect().item()


def _updated_at_parsing(cfg: DomainConfig, source, entity: str) -> Parsing | None:
    contract = next((c for c in cfg.contracts if c.entity == entity), None)
    column = next((c for c in contract.columns if c.name == "updated_at"), None) if contract else None
    return column_parsing(column, source) if column is not None else None


def _expect_new_rows(cfg: DomainConfig, source, run_date: date, new_rows: int) -> None:
    from lakehouse import alerts

    if new_rows < source.min_new_rows:
        log.warning("%s brought %d new rows on %s, expected at least %d (min_new_rows)", source.name, new_rows,
                    run_date, source.min_new_rows)
    alerts.track(f"few_rows:{cfg.name}:{source.name}", new_rows < source.min_new_rows, when=run_date.isoformat(),
                 problem=f":hourglass: *{source.name}* brought {new_rows:,} new rows on {run_date}, expected at "
                         f"least {source.min_new_rows:,} (min_new_rows in sources.yaml): did the source stop "
                         "sending? The run went on with what there was.",
                 recovered=f":white_check_mark: *{source.name}* brings new rows again ({new_rows:,} on {run_date}).")


def set_aside_index(cfg: DomainConfig, source: str):
    """Where a file source's set-aside files are listed: ``{ingest_date/name: entry}``."""
    return storage.state_path(cfg.lake, "set_aside", f"{source}.json")


def _keep_set_aside(cfg: DomainConfig, source: str, files: list[dict], registry: dict) -> list[dict]:
    """Copy each unreadable file into the lake (``_set_aside/<source>/<ingest_date>/``) and note
    it, with its reason, in the registry (a later day skips the same content; a corrected
    re-drop is new content and is taken) and in the source's set-aside index."""
    if not files:
        return []
    import shutil
    from pathlib import Path

    index = storage.read_json(set_aside_index(cfg, source), {})
    for f in files:
        kept = storage.lake_path(cfg.lake, "_set_aside", source, f["ingest_date"], f["name"])
        with storage.scratch_dir(cfg.lake) as scratch:  # put_file moves its file: the landing copy stays
            copy = shutil.copyfile(f["path"], Path(scratch) / f["name"])
            storage.put_file(copy, kept)
        registry[f["name"]] = {"sha256": f["sha256"], "ingest_date": f["ingest_date"], "set_aside": f["reason"]}
        index[f"{f['ingest_date']}/{f['name']}"] = {**f, "kept_at": str(kept)}
    storage.write_json(set_aside_index(cfg, source), index)
    return files


def _alert_set_aside(cfg: DomainConfig, source: str, run_date: date, files: list[dict]) -> None:
    """One incident per source while its files are being set aside; a recovery when a run of
    the source sets none aside."""
    from lakehouse import alerts

    listed = "; ".join(f"{f['name']}: {f['reason']}" for f in files[:5])
    alerts.track(f"set_aside:{cfg.name}:{source}", bool(files), when=run_date.isoformat(),
                 problem=f":file_folder: {len(files)} unreadable file(s) of *{source}* set aside on {run_date}, "
                         f"the rest of the day went on: {listed}. Kept in the lake under _set_aside/{source}/; "
                         f"`lakehouse quarantine files` lists them. Re-drop a corrected file (it is taken as "
                         f"new content), or `lakehouse quarantine retry-file --source {source} --file NAME`.",
                 recovered=f":white_check_mark: *{source}* read every file on {run_date}.")


def set_aside_files(cfg: DomainConfig) -> list[dict]:
    """Every file set aside by a file source, oldest first, with its state now: ``set aside``
    (a later run skips this content), ``taken again`` (a corrected re-drop, or a retry, was
    processed since) or ``waiting for a retry`` (forgotten by ``retry_file``, not yet run)."""
    out = []
    for source in (s for s in cfg.sources if isinstance(s, FileSource)):
        registry = storage.read_json(_registry_path(cfg, source.name), {})
        for _, entry in sorted(storage.read_json(set_aside_index(cfg, source.name), {}).items()):
            now = registry.get(entry["name"])
            state = ("waiting for a retry" if now is None else
                     "set aside" if now.get("set_aside") and now["sha256"] == entry["sha256"] else "taken again")
            out.append({"source": source.name, "ingest_date": entry["ingest_date"], "file": entry["name"],
                        "state": state, "reason": entry["reason"], "kept_at": entry["kept_at"]})
    return out


def retry_file(cfg: DomainConfig, source: str, name: str) -> dict:
    """Forget that ``name`` was set aside, so the next run of ``source`` takes it again (after
    the reader or the file was fixed in place); returns the forgotten entry."""
    with storage.locked(cfg.lake, f"ingest__{source}"):
        registry = storage.read_json(_registry_path(cfg, source), {})
        entry = registry.get(name)
        if entry is None or "set_aside" not in entry:
            raise ValueError(f"{name} is not a set-aside file of {source} "
                             f"(`lakehouse quarantine files` lists them)")
        del registry[name]
        storage.write_json(_registry_path(cfg, source), registry)
    return {"source": source, "file": name, **entry}


COALESCE_ROWS = 250_000


def coalesce(chunks: Iterator[Extracted], max_rows: int = COALESCE_ROWS) -> Iterator[Extracted]:
    """Merge consecutive small chunks with the same columns (e.g. one per dropped file).

    Lineage hashing and Parquet writes then run once per ~``max_rows`` rows instead of
    once per file: thousands of daily drops cost seconds, not minutes. Each row keeps its
    own pointer (materialised as ``_source_pointer``), and rows of differently shaped files
    are never merged, so every record hash is what it would be unmerged.
    """
    buffer: list[Extracted] = []

    def flush() -> Iterator[Extracted]:
        if len(buffer) == 1:
            yield buffer[0]
        elif buffer:
            frame = pl.concat([c.frame.with_columns(_source_pointer=c.pointer) for c in buffer])
            yield Extracted(buffer[0].entity, frame, pl.col("_source_pointer"),
                            files=[f for c in buffer for f in c.files])
        buffer.clear()

    for chunk in chunks:
        if chunk.frame.height == 0 and not chunk.files:
            if not buffer:
                yield chunk
            continue
        if buffer and (chunk.frame.columns != buffer[0].frame.columns or chunk.frame.dtypes != buffer[0].frame.dtypes
                       or sum(c.frame.height for c in buffer) + chunk.frame.height > max_rows):
            yield from flush()
        buffer.append(chunk)
    yield from flush()


def _bronze_frames(chunks: Iterator[Extracted], source: DatabaseSource | RestSource | FileSource,
                   run_id: str, now: datetime, new_files: list[dict]) -> Iterator[pl.DataFrame]:
    for chunk in coalesce(chunks):
        new_files.extend(chunk.files)
        frame = with_lineage(chunk, source=source.name, run_id=run_id, ingested_at=now)
        if isinstance(source, FileSource):
            # files are raw text; one schema across files keeps the partition uniform
            frame = frame.with_columns(pl.exclude("_ingested_at").cast(pl.String))
        yield frame
