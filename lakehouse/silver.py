"""Silver: typed, validated, deduplicated entities with history; rejects go to quarantine.

Two steps per entity and run:

1. ``stage``: the run's bronze batch is typed to the contract and validated by its
   pandera schema on values. Valid rows are published to
   ``silver/stg_<entity>/ingest_date=D``; each rejected row, with rule, reason,
   offending value and source pointer, to ``silver/quarantine/entity=X/ingest_date=D``.
   Both partitions are a pure function of the bronze batch, so reruns are idempotent.
2. ``build``: ``silver/<entity>`` (a Delta table) gets the history of the keys the batch
   touched (latest version per key, or SCD2 history, or all events), recomputed from those
   keys' staged rows and merged in one commit (ADR 0020); a full rebuild from every staged
   batch, the oracle it equals, runs where that does not apply. Order-independent by
   construction either way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from datetime import date

import pandera.polars as pa
import polars as pl

from lakehouse import deletes, parsing, pii, quality, storage
from lakehouse import drift as schema_drift
from lakehouse.bronze import bronze_table
from lakehouse.config import DomainConfig, EntityContract, SourceModel
from lakehouse.contracts import pandera_schema, polars_schema, renamed
from lakehouse.scd2 import latest, scd2

log = logging.getLogger(__name__)
QUARANTINE = "quarantine"
QUARANTINE_SCHEMA = {
    "rule": pl.String, "column": pl.String, "reason": pl.String, "offending_value": pl.String,
    "source_pointer": pl.String, "record": pl.String, "record_hash": pl.String, "_run_id": pl.String,
}
KEEP_LINEAGE = ["_source_pointer", "_record_hash", "_ingested_at"]


class QualityGateError(RuntimeError):
    """A batch must not be published (missing columns, too many rejects). Not retryable.

    ``check`` names the tier-1 check that refused it in ``gold.quality_checks``.
    """

    def __init__(self, message: str, *, check: str = "contract") -> None:
        super().__init__(message)
        self.check = check


def stg_table(entity: str) -> str:
    return f"stg_{entity}"


def _parsings(contract: EntityContract, source: SourceModel | None) -> dict[str, parsing.Parsing]:
    return {c.name: parsing.column_parsing(c, source) for c in contract.columns}


def type_batch(raw: pl.DataFrame, contract: EntityContract, *, where: str, source: SourceModel | None = None,
               tolerate_missing_nullable: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast a raw batch to the contract's types, read with each column's parse options
    (``lakehouse.parsing``: null tokens, formats, zone; ``source`` supplies the defaults).

    Returns the typed frame and a frame of parse failures (``_row``, column, value, expected):
    a value present in bronze that does not parse is a rejected row, never a silent null.
    Missing contract columns block the batch (the error names the batch and column),
    except nullable ones when ``tolerate_missing_nullable`` (schema drift ``evolve``/``rescue``).
    """
    missing = [c.bronze_name for c in contract.columns if c.bronze_name not in raw.columns
               and not (tolerate_missing_nullable and c.nullable)]
    if missing and raw.height:
        raise QualityGateError(
            f"{where}: columns {missing} required by contract {contract.entity!r} are missing "
            f"(found {sorted(c for c in raw.columns if not c.startswith('_'))})", check="columns_present")
    raw = raw.with_columns(pl.lit(None).alias(c.bronze_name) for c in contract.columns
                           if c.bronze_name not in raw.columns)
    types, options = polars_schema(contract), _parsings(contract, source)
    parsed = {c.name: parsing.parse(raw, c.bronze_name, types[c.name], options[c.name]) for c in contract.columns}
    lineage = [c for c in raw.columns if c.startswith("_")]
    typed = raw.with_row_index("_row").select(
        "_row", *(values.alias(name) for name, (values, _) in parsed.items()), *lineage)
    bad = [raw.with_row_index("_row").filter(failed).select(
        "_row", pl.lit(col.name).alias("column"), pl.col(col.bronze_name).cast(pl.String).alias("value"),
        pl.lit(options[col.name].expected(col.type)).alias("expected"))
        for col in contract.columns if (failed := parsed[col.name][1]).any()]
    empty = pl.DataFrame(schema={"_row": pl.UInt32, "column": pl.String, "value": pl.String, "expected": pl.String})
    return typed, pl.concat([empty, *bad])


def version_key(contract: EntityContract) -> list[str]:
    return [*contract.primary_key, *([contract.updated_at] if contract.updated_at else [])]


def duplicate_versions(raw: pl.LazyFrame, contract: EntityContract,
                       source: SourceModel | None = None, *, passes: int = 1) -> pl.DataFrame:
    """Pure: typed version keys held by more than one row of a batch (streamed, small result).

    ``passes`` > 1 counts the keys a hash bucket at a time (``_bucketed``): the count's
    table holds a bucket's keys, not the batch's."""
    schema, types, options = raw.collect_schema(), polars_schema(contract), _parsings(contract, source)
    cols = {c.name: c for c in contract.columns}
    keys = [parsing.parse_expr(pl.col(cols[k].bronze_name), schema[cols[k].bronze_name], types[k],
                               options[k]).alias(k)
            for k in version_key(contract) if cols[k].bronze_name in schema]
    if len(keys) < len(version_key(contract)):
        return pl.DataFrame(schema={k: types[k] for k in version_key(contract)})
    return _bucketed(raw.select(keys), version_key(contract), passes, lambda part: (
        part.group_by(version_key(contract)).len().filter(pl.col("len") > 1).drop("len")))


def exact_copies(raw: pl.LazyFrame, *, passes: int = 1) -> pl.DataFrame:
    """Pure: the row numbers (``_copy_of`` the first) of rows identical in content to an earlier
    row of the batch (same ``_record_hash``, the MD5 of the raw row): a source that sent a row
    twice. They collapse to the first; only versions that disagree are refused (streamed,
    a hash bucket of the rows per pass when ``passes`` > 1)."""
    if "_record_hash" not in raw.collect_schema().names():
        return pl.DataFrame(schema={"_global": pl.UInt32, "_copy_of": pl.UInt32})
    rows = raw.select("_record_hash").with_row_index("_global").filter(pl.col("_record_hash").is_not_null())

    def copies(part: pl.LazyFrame) -> pl.LazyFrame:
        first = part.group_by("_record_hash").agg(pl.col("_global").min().alias("_copy_of"), pl.len())
        return (part.join(first.filter(pl.col("len") > 1), on="_record_hash")
                .filter(pl.col("_global") != pl.col("_copy_of")).select("_global", "_copy_of"))

    return _bucketed(rows, ["_record_hash"], passes, copies).sort("_global")


def _bucketed(frame: pl.LazyFrame, key: list[str], passes: int,
              find: Callable[[pl.LazyFrame], pl.LazyFrame]) -> pl.DataFrame:
    """``find`` (a search local to ``key``: rows of one key land in one bucket) over ``frame``
    in ``passes`` streamed passes, each over one hash bucket of the key; results concatenated.
    A year of retail order lines (13 M rows) held 2.7 GB in one group-by of the row hashes."""
    if passes <= 1:
        return find(frame).collect(engine="streaming")
    # Polars' hash only splits this call's passes: nothing it computes outlives the call
    bucket = pl.struct(key).hash(seed=0) % passes
    return pl.concat([find(frame.filter(bucket == i)).collect(engine="streaming") for i in range(passes)])


# Rows of a batch per pass of the batch-wide duplicate searches (the group-by's table: ~250
# bytes a row of a row hash or version key)
DEDUP_PASS_ROWS = 4_000_000


def split_valid(typed: pl.DataFrame, parse_failures: pl.DataFrame, contract: EntityContract,
                duplicates: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate with pandera; returns (valid rows, failures with ``_row``, rule, column, value).

    ``duplicates``: version keys found duplicated across the whole batch when it is validated
    in chunks (``duplicate_versions``); their rows fail as pandera's own uniqueness check would.
    """
    fails = [parse_failures.select(
        "_row", pl.lit("parse").alias("rule"), "column",
        pl.col("value").alias("offending_value"), "expected")]
    if duplicates is not None and duplicates.height:
        fails.append(typed.join(duplicates, on=version_key(contract), how="semi", nulls_equal=True).select(
            "_row", pl.lit("multiple_fields_uniqueness").alias("rule"),
            pl.lit("|".join(contract.primary_key)).alias("column"),
            pl.lit(None, pl.String).alias("offending_value")))
    try:
        pandera_schema(contract, unique=duplicates is None).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        if cases["index"].null_count():
            raise QualityGateError(f"{contract.entity}: schema-level failure: "
                                   f"{cases.filter(pl.col('index').is_null()).head(5).to_dicts()}",
                                   check="schema") from exc
        # typed keeps raw row order, so pandera's positional index is the raw row number
        # a frame-level failure names no column: name a cross-field rule's columns, a duplicate's key
        rule_columns = {r.name: ",".join(r.columns([c.name for c in contract.columns])) for r in contract.rules}
        fails.append(cases.select(
            pl.col("index").alias("_row"),
            pl.col("check").alias("rule"),
            pl.when(pl.col("check").is_in(list(rule_columns)))
            .then(pl.col("check").replace_strict(rule_columns, default=None, return_dtype=pl.String))
            .when(pl.col("column").is_null() | (pl.col("check") == "multiple_fields_uniqueness"))
            .then(pl.lit("|".join(contract.primary_key)))
            .otherwise(pl.col("column")).alias("column"),
            pl.col("failure_case").cast(pl.String).alias("offending_value")))
    failed = pl.concat([f.with_columns(pl.col("_row").cast(pl.UInt32)) for f in fails], how="diagonal")
    # a value that did not parse is null to pandera: "not_nullable" there says nothing more
    unparsed = parse_failures.select(pl.col("_row").cast(pl.UInt32), "column", pl.lit("not_nullable").alias("rule"))
    failed = failed.join(unparsed, on=["_row", "column", "rule"], how="anti")
    names = renamed(contract)
    if names:  # the names a contract gave its parse and not_nullable checks
        given = pl.DataFrame([{"column": c, "rule": r, "_name": n} for (c, r), n in names.items()])
        failed = failed.join(given, on=["column", "rule"], how="left").with_columns(
            rule=pl.coalesce("_name", "rule")).drop("_name")
    # a frame-level failure names the values it is about, not the whole row (pandera's case is
    # the row with its lineage): a duplicate its key, a cross-field rule the columns it reads
    names = [c.name for c in contract.columns]
    reads = {"multiple_fields_uniqueness": contract.primary_key} | {r.name: r.columns(names) for r in contract.rules}
    # personal data a rule reads is shown as its token, as everywhere else in quarantine
    seen = pii.tokenise(typed.join(failed.select("_row").unique(), on="_row", how="semi"),
                        [c.name for c in contract.columns if c.pii])
    values = seen.select("_row", *(pl.struct(cols).struct.json_encode().alias(f"_v_{rule}")
                                   for rule, cols in reads.items() if cols))
    failed = failed.join(values, on="_row", how="left").with_columns(
        offending_value=pl.coalesce(
            *(pl.when(pl.col("rule") == rule).then(pl.col(f"_v_{rule}")) for rule, cols in reads.items() if cols),
            pl.col("offending_value"))).drop(f"_v_{rule}" for rule, cols in reads.items() if cols)
    valid = typed.join(failed.select("_row").unique(), on="_row", how="anti")
    return valid, failed


STAGE_CHUNK_ROWS = 1_000_000


def stage(cfg: DomainConfig, entity: str, run_date: date, run_id: str) -> dict[str, object]:
    """Type and validate one bronze batch; publish valid rows and quarantine rejects.

    The batch is processed in chunks of ``STAGE_CHUNK_ROWS`` rows, so an initial load of any
    size stays in bounded memory; duplicates across chunks are found in one streamed pass
    first. The gate decides on the whole batch, and nothing is published if it blocks.
    """
    contract = cfg.contract(entity)
    part = {"ingest_date": run_date.isoformat()}
    btable = bronze_table(contract.source, entity)
    where = f"bronze.{btable} ingest_date={part['ingest_date']}"
    path = storage.data_file(cfg.lake, "bronze", btable, part)
    if not storage.path_exists(path):
        raise QualityGateError(f"{where}: no bronze partition at {path}; run the extract first")
    schema, height = storage.file_schema(path), storage.file_rows(path)
    dataset = f"silver.{entity}"
    # a contract whose source is not configured (tests, rebuilds of retired sources) keeps the defaults
    source = cfg.source_of(contract)
    policy = source.schema_drift if source else "fail"
    drifted = schema_drift.detect(schema, contract, schema_drift.previous_schema(cfg.lake, btable, run_date))
    chunked = height > STAGE_CHUNK_ROWS
    counts = {"valid": 0, "quarantined": 0, "collapsed": 0}
    failures: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = []

    passes = -(-height // DEDUP_PASS_ROWS)
    copies = exact_copies(pl.scan_parquet(path), passes=passes)
    counts["collapsed"] = copies.height
    if copies.height:
        log.warning("%s: %d row(s) identical to an earlier row of the batch collapsed into it "
                    "(first: row %d, a copy of row %d)", where, copies.height, copies["_global"][0],
                    copies["_copy_of"][0])

    def validated() -> Iterator[pl.DataFrame]:
        scan = pl.scan_parquet(path)
        if copies.height:
            scan = (scan.with_row_index("_global").join(copies.lazy(), on="_global", how="anti")
                    .drop("_global"))
        duplicates = duplicate_versions(scan, contract, source, passes=passes) if chunked else None
        for offset, raw in enumerate(storage.read_batches(path, STAGE_CHUNK_ROWS)):
            if copies.height:
                raw = (raw.with_row_index("_global", offset * STAGE_CHUNK_ROWS)
                       .join(copies, on="_global", how="anti").drop("_global"))
            typed, parse_failures = type_batch(raw, contract, where=where, source=source,
                                               tolerate_missing_nullable=policy != "fail")
            valid, failed = split_valid(typed, parse_failures, contract, duplicates)
            rejected = _quarantine_rows(raw, failed, run_id, contract)
            failures.append(_detached(failed))  # kept to the end of the batch: a few rows each
            rejects.append(_detached(rejected))
            counts["valid"] += valid.height
            counts["quarantined"] += rejected.height
            extras = schema_drift.extra_columns(raw, drifted, policy)
            keep = [c.name for c in contract.columns] + [c for c in KEEP_LINEAGE if c in valid.columns]
            staged = valid.select("_row", *keep).join(extras, on="_row", how="left").drop("_row")
            yield pii.tokenise(staged, [c.name for c in contract.columns if c.pii])  # kept as its token
        _gate()  # raised here, the staged file is discarded before it is ever renamed in

    def _gate() -> None:
        failed, rejected = pl.concat(failures), pl.concat(rejects)
        results = quality.batch_results(contract, height, failed, rejected.height, collapsed=copies.height)
        jumps = quality.reject_rate_jumps(results, quality.rule_baseline(cfg, dataset, run_date), cfg.quality)
        # a rule that rejected nothing gets a verdict (it may settle an incident) but no row:
        # one per rule per batch would double the history for nothing
        results = pl.concat([results, quality.drift_result(drifted, policy), jumps.filter(pl.col("metric") > 0)])
        # held before the gate decides: a blocked batch leaves its history too (published with
        # the day's other batches by build_gold, or write_report when a gate blocked: ADR 0011)
        quality.hold(cfg, dataset, run_date, results, run_id)
        log.info("quality of %s: %d checks, not passing: %s", where, results.height, quality.summary(results))
        examples = {r["rule"]: r["offending_value"] for r in failed.group_by("rule", maintain_order=True).agg(
            pl.col("offending_value").unique(maintain_order=True).head(3)).to_dicts()}
        over = results.filter(pl.col("tier") == 2, pl.col("status") == quality.BLOCKED)
        if over.height:
            raise QualityGateError(f"{where}: " + "; ".join(
                f"rule {r['check']!r} ({r['column']}) rejected {r['failing_count']}/{height} rows "
                f"({r['metric']:.1%}), above its max_reject_rate={r['threshold']:.1%}, e.g. {examples[r['check']]}"
                for r in over.to_dicts()), check="rule_reject_rate")
        rate = rejected.height / height if height else 0.0
        if rate > contract.max_quarantine_rate:
            by_rule = results.filter(pl.col("tier") == 2, pl.col("failing_count") > 0,
                                     pl.col("check") != "exact_duplicate").sort("failing_count", descending=True)
            raise QualityGateError(
                f"{where}: {rejected.height}/{height} rows ({rate:.1%}) failed the contract, above "
                f"max_quarantine_rate={contract.max_quarantine_rate:.1%}; by rule: " + "; ".join(
                    f"{r['check']} ({r['column']}) {r['failing_count']}, e.g. {examples.get(r['check'], [])}"
                    for r in by_rule.head(5).to_dicts()), check="quarantine_rate")
        # only a batch that publishes pages for a jump: a blocked one has its own alert
        quality.alert_reject_jumps(cfg, dataset, run_date, jumps, examples)

    try:
        expected = contract.expected_rows
        if expected and not ((expected.min or 0) <= height <= (expected.max or height)):
            raise QualityGateError(f"{where}: {height} rows, expected between {expected.min or 0} and "
                                   f"{expected.max or 'any'} (contract {contract.entity!r})", check="row_count")
        if policy == "fail" and (drifted.added or drifted.retyped) and height:
            raise QualityGateError(
                f"{where}: schema drift: {drifted.describe(pl.scan_parquet(path).head(STAGE_CHUNK_ROWS).collect())}. Source {contract.source!r} has "
                "schema_drift: fail; add the columns to the contract or set schema_drift: evolve or rescue",
                check="schema_drift")
        storage.publish_batches(validated(), cfg.lake, "silver", stg_table(entity), part)
    except QualityGateError as exc:
        if exc.check not in ("quarantine_rate", "rule_reject_rate"):  # those recorded their full results
            quality.hold(cfg, dataset, run_date, quality.blocked(exc.check, str(exc), height), run_id)
        raise
    rejected, qpart = pl.concat(rejects), {"entity": entity, **part}
    # most batches reject nothing: a commit then only to create the (empty) table, which the
    # catalog serves, or to empty an earlier attempt's rejects (a Delta commit costs ~25 ms,
    # one per entity and day for nothing otherwise)
    if (rejected.height or not storage.exists(cfg.lake, "silver", QUARANTINE)
            or storage.exists(cfg.lake, "silver", QUARANTINE, qpart)):
        storage.publish(rejected, cfg.lake, "silver", QUARANTINE, qpart)
    log.info("%s: %d valid, %d quarantined, %d exact copies collapsed", where, counts["valid"],
             counts["quarantined"], counts["collapsed"])
    failed = pl.concat(failures)
    by_rule = {r["rule"]: r["n"] for r in failed.group_by("rule").agg(pl.col("_row").n_unique().alias("n"))
               .sort("n", "rule", descending=[True, False]).to_dicts()}
    return {"rows_in": height, **counts, "rejected_by_rule": by_rule}


def _detached(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in buffers of its own. Rows filtered or gathered from a chunk keep sharing the
    chunk's string buffers (Polars' string views), so a few rejects kept per chunk would hold
    every chunk's strings (~100 MB per million order lines); an Arrow round trip copies them."""
    return pl.from_arrow(frame.to_arrow())  # type: ignore[return-value]


def _quarantine_rows(raw: pl.DataFrame, failed: pl.DataFrame, run_id: str,
                     contract: EntityContract) -> pl.DataFrame:
    """One quarantine row per rejected source row, all its broken rules listed (PII as tokens)."""
    if failed.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    pii_cols = {c.name: c.bronze_name for c in contract.columns if c.pii}
    if pii_cols:
        raw = pii.tokenise(raw, list(pii_cols.values()))
        secret = pii.key()
        failed = failed.with_columns(offending_value=pl.when(pl.col("column").is_in(list(pii_cols)))
                                     .then(pl.col("offending_value").map_elements(
                                         lambda v: pii.token(v, secret), return_dtype=pl.String))
                                     .otherwise(pl.col("offending_value")))
    data_cols = [c for c in raw.columns if not c.startswith("_")]
    # only the rejected rows are encoded and kept: a frame gathered from the whole chunk's
    # strings shares (and keeps alive) the chunk's string buffers, ~200 MB per million order
    # lines held by every chunk's few rejects until the batch ended (4.5 GB for a year's load)
    records = raw.with_row_index("_row").join(failed.select("_row").unique(), on="_row", how="semi").select(
        "_row", pl.struct(data_cols).struct.json_encode().alias("record"),
        pl.col("_source_pointer").alias("source_pointer"), pl.col("_record_hash").alias("record_hash"))
    per_row = failed.sort("_row", "column", "rule").group_by("_row", maintain_order=True).agg(
        pl.col("rule").str.join("; "),
        pl.col("column").str.join("; "),
        pl.when(pl.col("rule") == "parse")
        .then(pl.format("{} is not {} (value: {})", "column", "expected", pl.col("offending_value").fill_null("null")))
        .otherwise(pl.format("{} failed {} (value: {})", "column", "rule", pl.col("offending_value").fill_null("null")))
        .str.join("; ").alias("reason"),
        pl.col("offending_value").str.join("; "),
    )
    return per_row.join(records, on="_row", how="left").select(
        "rule", "column", "reason", "offending_value", "source_pointer", "record", "record_hash",
        pl.lit(run_id).alias("_run_id"))


def stage_and_build(cfg: DomainConfig, entity: str, run_date: date, run_id: str) -> dict[str, object]:
    """The daily silver step: stage the run's batch, then update the entity's silver table
    for the keys that batch touched (those it brings and those of the batch it replaced)."""
    # the replaced batch's keys are written down before the batch is replaced: an attempt
    # killed between staging and merging leaves them for the next one, which could not see
    # them any more (it finds the new batch staged already)
    pending = {"entity": entity}
    earlier = storage.read(cfg.lake, "_state", PENDING, pending)
    before = pl.concat([staged_keys(cfg, entity, run_date), *([earlier] if earlier is not None else [])])
    storage.publish(before, cfg.lake, "_state", PENDING, pending)
    staged = stage(cfg, entity, run_date, run_id)
    touched = pl.concat([before, staged_keys(cfg, entity, run_date)])
    rows = build(cfg, entity, touched=touched)
    storage.publish(before.clear(), cfg.lake, "_state", PENDING, pending)
    return staged | {"silver_rows": rows}


# Keys whose staged rows a silver task changed but whose merge has not committed yet
PENDING = "silver_pending_keys"


def staged_keys(cfg: DomainConfig, entity: str, run_date: date) -> pl.DataFrame:
    """The distinct primary keys of one staged batch (none when it was never staged)."""
    contract = cfg.contract(entity)
    batch = storage.scan_partition(cfg.lake, "silver", stg_table(entity), {"ingest_date": run_date.isoformat()})
    if batch is None:
        return pl.DataFrame(schema={k: polars_schema(contract)[k] for k in contract.primary_key})
    return batch.select(contract.primary_key).unique().collect()


def build(cfg: DomainConfig, entity: str, *, touched: pl.DataFrame | None = None) -> int:
    """Update ``silver/<entity>`` (a Delta table, ADR 0019) from the staged batches; returns its rows.

    With ``touched`` (keys whose staged rows changed) only those keys are recomputed, from
    their own staged rows, and replaced in one commit (one per ``MERGE_SLICE_KEYS`` sorted keys:
    a key's rows are always replaced whole, in one commit): every row of a key-local table depends
    on its key's staged rows alone, so this equals a full rebuild (the oracle, tested). The
    full rebuild from every staged batch runs instead on the first build, without
    ``touched``, for snapshot-inferred deletes (not key-local), when a column was added, or
    when most keys changed anyway.

    Versions that batches disagree on (same key and ``updated_at``, different values)
    are refused: they go to ``silver/quarantine_conflicts/entity=X`` and not to silver.
    """
    contract = cfg.contract(entity)
    if touched is None or not _merge_touched(cfg, contract, touched):
        _rebuild(cfg, contract)
    return storage.row_count(cfg.lake, "silver", entity)


# A batch touching more than this share of a table's rows rebuilds it whole (cheaper than a merge)
MERGE_MAX_SHARE = 0.5
# Keys merged in one commit: a batch of more (a month of seed-scale order lines is 5.4 M) is
# merged in slices of its sorted keys, so that a slice's history and delta-rs' merge source
# stay bounded (like ``BUILD_BUCKET_ROWS`` for a rebuild)
MERGE_SLICE_KEYS = 2_000_000


def _merge_touched(cfg: DomainConfig, contract: EntityContract, touched: pl.DataFrame) -> bool:
    """Recompute the touched keys and merge them in; False when a full rebuild must run instead."""
    from lakehouse import delta

    root = storage.table_dir(cfg.lake, "silver", contract.entity)
    if not key_local(contract) or not delta.is_table(root):
        return False
    key = contract.primary_key
    keys = touched.select(key).unique()
    if keys.height == 0:  # an empty batch (and none replaced): nothing can have changed
        return True
    if keys.height > MERGE_MAX_SHARE * max(storage.row_count(cfg.lake, "silver", contract.entity), 1):
        return False
    staged = storage.scan(cfg.lake, "silver", stg_table(contract.entity), union_schema=True)
    current = delta.scan(root).collect_schema()
    # a batch of many keys (a month loaded per run) is merged a slice of sorted keys at a time,
    # a commit each: all at once, a month of seed-scale order lines (5.4 M keys) held 4.6 GB
    keys = keys.sort(key)
    for start in range(0, keys.height, MERGE_SLICE_KEYS):
        some = keys.slice(start, MERGE_SLICE_KEYS)
        subset = delta.with_keys(staged, key, some).collect().lazy()  # their history: read once
        conflicts = conflicting_versions(subset, contract).collect() if contract.updated_at else None
        rows = history(_without_conflicts(subset, conflicts, contract), contract, cfg.timezone).collect()
        if dict(rows.schema) != dict(current):  # the first slice's (every slice has the same columns)
            log.info("silver.%s: columns changed (%s -> %s), rebuilt whole", contract.entity,
                     list(current.items()), list(rows.schema.items()))
            return False
        if conflicts is not None:
            _replace_conflicts(cfg, contract, some, conflicts)
        metrics = delta.replace_keys(rows, root, key, some)
        log.info("silver.%s: %d key(s) merged (%d rows deleted, %d inserted, %d of %d files scanned)",
                 contract.entity, some.height, metrics["num_target_rows_deleted"],
                 metrics["num_target_rows_inserted"], metrics["num_target_files_scanned"],
                 metrics["num_target_files_scanned"] + metrics["num_target_files_skipped_during_scan"])
    return True


def _without_conflicts(staged: pl.LazyFrame, conflicts: pl.DataFrame | pl.LazyFrame | None,
                       contract: EntityContract) -> pl.LazyFrame:
    """Pure: staged rows minus the versions batches disagree on."""
    if conflicts is None:
        return staged
    version = [*contract.primary_key, contract.updated_at]
    refused = conflicts.lazy().select(pl.col("_key").str.json_decode(
        pl.Struct({k: staged.collect_schema()[k] for k in version})).struct.unnest())
    return staged.join(refused, on=version, how="anti", nulls_equal=True)


CONFLICTS = "quarantine_conflicts"


def _replace_conflicts(cfg: DomainConfig, contract: EntityContract, keys: pl.DataFrame,
                       found: pl.DataFrame) -> None:
    """The entity's refused versions: those of untouched keys kept, the touched keys' replaced."""
    part = {"entity": contract.entity}
    old = storage.read(cfg.lake, "silver", CONFLICTS, part)
    if old is None and found.height == 0:
        return
    if old is not None and old.height:
        key_types = pl.Struct({k: keys.schema[k] for k in contract.primary_key})
        old = (old.with_columns(_k=pl.col("_key").str.json_decode(
            pl.Struct({**key_types.to_schema(), contract.updated_at: pl.String})))
            .with_columns(pl.col("_k").struct.field(k).alias(f"_k_{k}") for k in contract.primary_key)
            .join(keys.rename({k: f"_k_{k}" for k in contract.primary_key}),
                  on=[f"_k_{k}" for k in contract.primary_key], how="anti", nulls_equal=True)
            .select(found.columns))
        found = pl.concat([old, found]).sort("_key")
    storage.publish(found, cfg.lake, "silver", CONFLICTS, part)


def _rebuild(cfg: DomainConfig, contract: EntityContract) -> None:
    """``silver/<entity>`` (and its refused versions) from every staged batch, in one commit.

    Above ``BUILD_BUCKET_ROWS`` staged rows a key-local table is built in hash buckets of the
    key, the refused versions too (a version's rows share its key, so they share a bucket):
    nothing holds more than a bucket, whatever the history (the conflict search over a year of
    retail order lines, 13 M rows, held 5.7 GB when it ran over the whole table at once).
    """
    from lakehouse import delta

    entity = contract.entity
    root = storage.table_dir(cfg.lake, "silver", entity)
    staged = storage.scan(cfg.lake, "silver", stg_table(entity), union_schema=True)  # evolved columns
    rows = storage.row_count(cfg.lake, "silver", stg_table(entity))
    if rows > BUILD_BUCKET_ROWS and key_local(contract):
        buckets = -(-rows // BUILD_BUCKET_ROWS)
        found: list[pl.DataFrame] = []
        with storage.spill_buckets(staged, cfg.lake, contract.primary_key, buckets) as parts, \
                storage.scratch_dir(cfg.lake) as tmp:
            for i, part in enumerate(parts):
                conflicts = conflicting_versions(part, contract).collect() if contract.updated_at else None
                found += [conflicts] if conflicts is not None else []
                (history(_without_conflicts(part, conflicts, contract), contract, cfg.timezone)
                 .sort(contract.primary_key).collect().write_parquet(tmp / f"bucket-{i:05d}.parquet"))
            if contract.updated_at:  # refused versions first, as below: a rerun recomputes both
                storage.publish(pl.concat(found).sort("_key"), cfg.lake, "silver", CONFLICTS, {"entity": entity})
            delta.replace_all(_key_ordered([pl.scan_parquet(f) for f in sorted(tmp.glob("bucket-*.parquet"))],
                                           contract.primary_key), root, target_file_size=delta.FILE_BYTES)
        return
    if contract.updated_at:
        storage.publish(conflicting_versions(staged, contract), cfg.lake, "silver", CONFLICTS, {"entity": entity})
        staged = _without_conflicts(staged, storage.read(cfg.lake, "silver", CONFLICTS, {"entity": entity}),
                                    contract)
    delta.replace_all(history(staged, contract, cfg.timezone).sort(contract.primary_key), root,
                      target_file_size=delta.FILE_BYTES)


def _key_ordered(buckets: list[pl.LazyFrame], key: list[str]) -> pl.LazyFrame:
    """Pure: key-sorted buckets as one stream in key order (a streamed merge of sorted inputs),
    so the table's files hold disjoint key ranges; Polars merges on one column only, so a
    composite key keeps bucket order (each file then a key range within its bucket)."""
    if len(key) != 1:
        return pl.concat(buckets)
    return functools.reduce(lambda a, b: a.merge_sorted(b, key=key[0]), buckets)


# Above this many staged rows, ``build`` works in hash buckets of the key (bounded memory: the
# sort behind latest/SCD2 held ~650 bytes per row, 3.9 GB for TPC-H SF1's 6 M order lines)
BUILD_BUCKET_ROWS = 2_000_000


def key_local(contract: EntityContract) -> bool:
    """Whether a key's silver rows depend on that key's staged rows alone. Deletes inferred from
    snapshots do not: a key is deleted by a later batch that lacks it, whatever bucket it's in."""
    return not (contract.deletes and not contract.deletes.flag_column)


def conflicting_versions(staged: pl.LazyFrame, contract: EntityContract) -> pl.LazyFrame:
    """Pure: (key, ``updated_at``) pairs whose content differs between staged batches."""
    version = [*contract.primary_key, contract.updated_at]
    content = [c.name for c in contract.columns if c.name not in version]
    # which versions disagree is cheap to find (distinct contents per version, compared exactly:
    # a hash could collide and hide a conflict); the readable details are only built for those
    # few, not for the millions of versions that agree
    disagree = (staged.group_by(version).agg(pl.struct(content).n_unique().alias("_contents"))
                .filter(pl.col("_contents") > 1).select(version))
    return (
        staged.join(disagree, on=version, how="semi", nulls_equal=True)
        .group_by(version)
        .agg(pl.struct(content).n_unique().alias("_n"),
             pl.col("_source_pointer").sort().str.join(", ").alias("source_pointers"),
             pl.struct(content).sort_by("ingest_date").struct.json_encode().str.join("; ").alias("versions"))
        .filter(pl.col("_n") > 1)
        .select(
            pl.struct(version).struct.json_encode().alias("_key"),
            pl.lit("conflicting_versions").alias("rule"),
            pl.format("{} versions with the same key and {} differ: {}", "_n", pl.lit(contract.updated_at),
                      "versions").alias("reason"),
            "source_pointers",
        )
        .sort("_key")
    )


def history(staged: pl.LazyFrame, contract: EntityContract, tz: str = "UTC") -> pl.LazyFrame:
    """Pure: staged batches (with ``ingest_date``) -> the silver table for the contract's history mode."""
    cols = [c.name for c in contract.columns]
    # columns a batch carried beyond its contract (schema drift evolve/rescue), kept as type 1
    extras = [c for c in staged.collect_schema().names()
              if c not in cols and c != "ingest_date" and (c == schema_drift.RESCUED or not c.startswith("_"))]
    cols += extras
    key = contract.primary_key
    order = [*([contract.updated_at] if contract.updated_at else []), "ingest_date", "_source_pointer"]
    lf = staged.select(*cols, "ingest_date", "_source_pointer")
    if contract.deletes and contract.deletes.flag_column:
        lf = deletes.from_flag(lf, contract.deletes.flag_column)
    elif contract.deletes:
        lf = deletes.from_snapshots(lf, key=key, changed_at=contract.updated_at, batch="ingest_date", tz=tz)
    if contract.deletes and deletes.IS_DELETED not in cols:
        cols.append(deletes.IS_DELETED)
    if contract.history == "scd2":
        # the same version seen in two overlapping batches is one version
        deduped = latest(lf, key=[*key, contract.updated_at], order_by=["ingest_date", "_source_pointer"])
        type1 = [c.name for c in contract.columns if c.scd_type == 1] + extras
        tracked = [c for c in cols if c not in (*key, contract.updated_at, *type1)]
        return scd2(deduped, key=key, changed_at=contract.updated_at, tracked=tracked, overwrite=type1)
    if contract.history == "latest":
        return latest(lf, key=key, order_by=order)
    return lf.unique(maintain_order=False).sort([*key, *order])
