"""Quality history (``gold.quality_checks``) and the tier-3 statistical checks (ADR 0011).

Every check that runs leaves one row: which table and partition, which check, its tier,
its status, how many rows or groups failed, the measured metric and its threshold.

* Tier 1, blocking: the batch has its contract's columns; its reject rate stays under
  ``max_quarantine_rate``. A failure publishes nothing and fails the task.
* Tier 2, row-level: each contract rule (parse, nullability, range, allowed values,
  pattern, unique version key). Failing rows go to quarantine; the rest proceed.
* Tier 3, statistical: configured daily metrics of gold tables against the same weekday
  of the previous weeks (z-score, IQR, day-over-day change). Every method's flags are
  recorded; Slack hears of a group when ``alert_min_methods`` of them agree. Never blocks.

Rows are published per ``business_date`` and ``dataset`` partition, so rerunning a date
replaces its rows (idempotent) and concurrent runs for other dates never touch them.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import polars as pl

from lakehouse import delta, storage
from lakehouse.config import DomainConfig, EntityContract, MetricCheck, QualityConfig

log = logging.getLogger(__name__)

TABLE = "quality_checks"
SCHEMA: dict[str, pl.DataType] = {
    "check": pl.String(), "column": pl.String(), "tier": pl.Int8(), "status": pl.String(),
    "failing_count": pl.Int64(), "rows_checked": pl.Int64(), "metric": pl.Float64(),
    "threshold": pl.Float64(), "detail": pl.String(), "_run_id": pl.String(),
}
DOCS = {
    "business_date": "the run's business date",
    "dataset": "the checked table: silver.<entity> for a batch, gold.<table> for a metric",
    "check": "rule name (the contract's, else pandera's; <metric>:zscore|iqr|volatility|consensus for tier 3)",
    "column": "the column a rule checks (a rule's columns joined by ',', a key by '|'; * for the batch)",
    "tier": "1 blocking, 2 row-level (rejects quarantined), 3 statistical (flag only)",
    "status": "pass | quarantined | blocked | flagged | no_baseline | evolved | rescued | collapsed",
    "failing_count": "rows (tiers 1-2) or groups (tier 3) that failed",
    "rows_checked": "rows (tiers 1-2) or groups (tier 3) checked",
    "metric": "what was measured (reject rate, worst |z|, ...)",
    "threshold": "the configured limit the metric is held to",
    "detail": "a readable reason or up to 5 examples as JSON",
}
PASS, QUARANTINED, BLOCKED, FLAGGED, NO_BASELINE = "pass", "quarantined", "blocked", "flagged", "no_baseline"
COLLAPSED = "collapsed"  # exact copies of a row, kept once


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA) if rows else pl.DataFrame(schema=SCHEMA)


def record(cfg: DomainConfig, dataset: str, business_date: date, results: pl.DataFrame, run_id: str) -> None:
    """Publish one run's results for ``dataset`` now (replacing a rerun's earlier rows)."""
    _publish(cfg, [_partition(results, business_date, dataset, run_id)])


Partition = tuple[date, str, pl.DataFrame]  # (business date, dataset, its rows)


def _partition(results: pl.DataFrame, business_date: date, dataset: str, run_id: str) -> Partition:
    """One (``business_date``, ``dataset``) partition of ``run_id``'s results: the key, and its
    rows in the table's column order (a partition may be emptied: its key still says which one)."""
    rows = (results.with_columns(pl.lit(run_id).alias("_run_id"))
            .select([pl.col(c).cast(t) for c, t in SCHEMA.items()]).sort("tier", "check", "column"))
    return business_date, dataset, rows.with_columns(pl.lit(business_date).alias("business_date"),
                                                     pl.lit(dataset).alias("dataset"))


def _publish(cfg: DomainConfig, partitions: list[Partition]) -> None:
    # a Delta table (ADR 0019), all the partitions in one commit: each commit lists the table's
    # whole log on local disk, so one per batch made every day's commits slower than the last
    # (docs/benchmarks.md, "A tiny day costs more as the lake's history grows")
    keys = [{"business_date": day, "dataset": dataset} for day, dataset, _ in partitions]
    delta.replace_partitions(pl.concat(rows for _, _, rows in partitions), storage.table_dir(cfg.lake, "gold", TABLE),
                             keys, partition_by=["business_date", "dataset"])


HELD = "quality_held"  # under the lake's _state: <business date>/<dataset>.json


def hold(cfg: DomainConfig, dataset: str, business_date: date, results: pl.DataFrame, run_id: str) -> None:
    """Keep a batch's results until the run publishes the day's batches together
    (``publish_held``: one commit a day instead of one per silver entity, ADR 0011).

    A small JSON document, replaced atomically and fenced like every write, so a rerun's
    batch replaces its earlier results and a superseded attempt holds nothing."""
    storage.write_json(storage.state_path(cfg.lake, HELD, business_date.isoformat(), f"{dataset}.json"),
                       {"run_id": run_id, "rows": results.select(list(SCHEMA)).to_dicts()})


def publish_held(cfg: DomainConfig, business_date: date | None = None) -> list[str]:
    """Publish the results held for ``business_date`` (every date: None) in one commit, then
    forget them; returns the published ``<date>/<dataset>`` names. Nothing held: no commit.

    The daily run calls it from ``build_gold`` (before the catalog serves the table) and from
    ``write_report``, which runs on a day a silver gate blocked too: its rows are published
    either way. Published first, forgotten after: a crash in between publishes them again."""
    root = storage.state_path(cfg.lake, HELD)
    docs = storage.find(root, f"{business_date.isoformat() if business_date else '*'}/*.json")
    partitions, names = [], []
    for doc in docs:
        day, name = str(doc).rsplit("/", 2)[-2:]
        held = storage.read_json(doc, None)
        if held is None:  # published and forgotten by another caller meanwhile
            continue
        dataset = name.removesuffix(".json")
        partitions.append(_partition(pl.DataFrame(held["rows"], schema=SCHEMA), date.fromisoformat(day), dataset,
                                     held["run_id"]))
        names.append(f"{day}/{dataset}")
    if partitions:
        _publish(cfg, partitions)
    for doc in docs:
        storage.remove(doc)
    return names


# ----------------------------------------------------------------------------- tiers 1 and 2
def declared_rules(contract: EntityContract) -> list[tuple[str, str]]:
    """(column, rule) for every row-level rule of a contract, named as in quarantine."""
    from lakehouse.contracts import rules

    return [(r.column, r.name) for r in rules(contract)]


def batch_results(contract: EntityContract, rows_in: int, failed: pl.DataFrame,
                  rejected_rows: int, *, collapsed: int = 0) -> pl.DataFrame:
    """Pure: a validated batch's tier-2 rows (one per rule, and ``exact_duplicate``: rows that
    were copies of an earlier row and collapsed into it) and its tier-1 reject-rate row.

    ``failed`` has one row per (``_row``, ``column``, ``rule``) failure, as ``split_valid`` returns.
    """
    counts = {(r["column"], r["rule"]): r["n"] for r in failed.group_by("column", "rule").agg(
        pl.col("_row").n_unique().alias("n")).to_dicts()}
    examples = {(r["column"], r["rule"]): r["v"] for r in failed.group_by("column", "rule").agg(
        pl.col("offending_value").unique(maintain_order=True).head(5).alias("v")).to_dicts()}
    from lakehouse.contracts import rules as contract_rules

    limits = {(r.column, r.name): r.max_reject_rate for r in contract_rules(contract)}
    rules = list(limits)
    rules += sorted(k for k in counts if k not in limits)  # e.g. a rule pandera names differently

    def status(key: tuple[str, str]) -> str:
        n, limit = counts.get(key, 0), limits.get(key)
        if limit is not None and rows_in and n / rows_in > limit:
            return BLOCKED
        return QUARANTINED if n else PASS

    rows = [{"check": rule, "column": column, "tier": 2, "status": status((column, rule)),
             "failing_count": counts.get((column, rule), 0), "rows_checked": rows_in,
             "detail": json.dumps(examples[(column, rule)]) if (column, rule) in examples else None,
             **({"metric": counts.get((column, rule), 0) / rows_in if rows_in else 0.0,
                 "threshold": limits[(column, rule)]} if limits.get((column, rule)) is not None else {})}
            for column, rule in rules]
    rows.append({"check": "exact_duplicate", "column": "*", "tier": 2,
                 "status": COLLAPSED if collapsed else PASS, "failing_count": collapsed,
                 "rows_checked": rows_in})
    rate = rejected_rows / rows_in if rows_in else 0.0
    rows.append({"check": "quarantine_rate", "column": "*", "tier": 1,
                 "status": BLOCKED if rate > contract.max_quarantine_rate else PASS,
                 "failing_count": rejected_rows, "rows_checked": rows_in, "metric": rate,
                 "threshold": contract.max_quarantine_rate})
    return _frame(rows)


REJECT_JUMP = "reject_jump"  # tier-3 suffix: ``<rule>:reject_jump``


def reject_rate_jumps(today: pl.DataFrame, baseline: pl.DataFrame, qc: QualityConfig) -> pl.DataFrame:
    """Pure: tier 3 of a batch: each rule's reject rate against its own rates on earlier days.

    ``today`` is the batch's ``batch_results``; ``baseline`` the same dataset's earlier tier-2
    rows (``business_date``, ``check``, ``column``, ``failing_count``, ``rows_checked``). A rule
    *jumps* when today's rate exceeds its baseline mean by at least ``reject_min_increase`` and
    by more than ``zscore`` standard deviations (by any amount when the rate never varied): a
    whole category starting to fail (every cancelled flight, say) stays under a 5% gate but
    not under this. Fewer than ``min_baseline_days`` earlier days, or a batch of fewer than
    ``reject_min_rows`` rows, gives ``no_baseline``. Never blocks.
    """
    rules = today.filter(pl.col("tier") == 2, pl.col("check") != "exact_duplicate")
    if rules.is_empty():
        return _frame([])
    rates = (baseline.filter(pl.col("rows_checked") > 0)
             .group_by("check", "column", "business_date")  # one batch a day; summed if a day has more
             .agg((pl.col("failing_count").sum() / pl.col("rows_checked").sum()).alias("rate"))
             .group_by("check", "column")
             .agg(pl.col("rate").mean().alias("mean"), pl.col("rate").std(ddof=1).fill_null(0.0).alias("std"),
                  pl.len().alias("days")))
    scored = rules.join(rates, on=["check", "column"], how="left").with_columns(
        (pl.col("failing_count") / pl.col("rows_checked")).fill_nan(0.0).alias("rate"),
        pl.col("days").fill_null(0))
    out = []
    for r in scored.to_dicts():
        row = {"check": f"{r['check']}:{REJECT_JUMP}", "column": r["column"], "tier": 3,
               "rows_checked": r["rows_checked"], "metric": r["rate"]}
        if r["failing_count"] == 0:  # rejected nothing: cannot have jumped, whatever the baseline
            out.append({**row, "status": PASS, "failing_count": 0, "detail": json.dumps({})})
            continue
        if r["rows_checked"] < qc.reject_min_rows or r["days"] < qc.min_baseline_days:
            out.append({**row, "status": NO_BASELINE, "failing_count": 0,
                        "detail": json.dumps({"baseline_days": r["days"], "rows": r["rows_checked"]})})
            continue
        limit = r["mean"] + max(qc.reject_min_increase, qc.zscore * r["std"])
        jumped = r["rate"] > limit
        out.append({**row, "status": FLAGGED if jumped else PASS,
                    "failing_count": r["failing_count"] if jumped else 0, "threshold": limit,
                    "detail": json.dumps({"baseline_mean": round(r["mean"], 6), "baseline_std": round(r["std"], 6),
                                          "baseline_days": r["days"]})})
    return _frame(out)


def rule_baseline(cfg: DomainConfig, dataset: str, run_date: date) -> pl.DataFrame:
    """The tier-2 history of ``dataset`` on the ``reject_baseline_days`` days before ``run_date``."""
    lf = history(cfg)
    if lf is None:
        return pl.DataFrame(schema={"business_date": pl.Date(), **SCHEMA})
    start = run_date - timedelta(days=cfg.quality.reject_baseline_days)
    day = pl.col("business_date").cast(pl.Date)
    return (lf.filter(pl.col("dataset") == dataset, day >= start, day < run_date, pl.col("tier") == 2)
            .select(day.alias("business_date"), "check", "column", "failing_count", "rows_checked").collect())


def alert_reject_jumps(cfg: DomainConfig, dataset: str, run_date: date, jumps: pl.DataFrame,
                       examples: dict[str, list]) -> list[str]:
    """One incident per rule whose reject rate jumped (named by the contract's rule name), and a
    recovery for a rule that had one and is back within its baseline; returns the jumped rules."""
    from lakehouse import alerts

    jumped = []
    for r in jumps.to_dicts():
        if r["status"] not in (FLAGGED, PASS):
            continue  # no baseline: no verdict either way
        rule = r["check"].removesuffix(f":{REJECT_JUMP}")
        base = json.loads(r["detail"]) or {"baseline_mean": 0.0, "baseline_days": 0}
        if r["status"] == FLAGGED:
            jumped.append(rule)
        alerts.track(
            f"reject_jump:{cfg.name}:{dataset}:{rule}", r["status"] == FLAGGED, when=run_date.isoformat(),
            problem=f":mag: rule *{rule}* ({r['column']}) of {dataset} rejected {r['failing_count']:,} of "
                    f"{r['rows_checked']:,} rows on {run_date} ({r['metric']:.2%}), against "
                    f"{base['baseline_mean']:.2%} on average over {base['baseline_days']} earlier days; "
                    f"e.g. {examples.get(rule, [])[:3]}. The rows are in silver.quarantine; not blocking.",
            recovered=f":white_check_mark: rule *{rule}* of {dataset} is back to its usual reject rate on "
                      f"{run_date} ({r['metric']:.2%}).")
    return jumped


def drift_result(drifted, policy: str) -> pl.DataFrame:
    """Pure: the batch's schema-drift row (``drifted`` is a ``lakehouse.drift.Drift``)."""
    status = PASS if not (drifted.added or drifted.retyped or drifted.missing) else {
        "evolve": "evolved", "rescue": "rescued"}.get(policy, PASS)
    return _frame([{"check": "schema_drift", "column": "*", "tier": 1, "status": status,
                    "failing_count": len(drifted.added) + len(drifted.retyped) + len(drifted.missing),
                    "rows_checked": 0, "detail": drifted.as_json() if status != PASS else None}])


def summary(results: pl.DataFrame) -> str:
    """One line for the task log: the checks that did not pass, with their counts (a check
    without a baseline yet has no verdict, so it is not listed)."""
    bad = results.filter(~pl.col("status").is_in([PASS, NO_BASELINE]))
    return ", ".join(f"{r['check']}[{r['column']}] {r['status']} ({r['failing_count']})"
                     for r in bad.to_dicts()) or "none"


def blocked(check: str, detail: str, rows_in: int) -> pl.DataFrame:
    """Pure: the one row of a batch a tier-1 gate refused before any rule ran."""
    return _frame([{"check": check, "column": "*", "tier": 1, "status": BLOCKED, "failing_count": rows_in,
                    "rows_checked": rows_in, "detail": detail[:2000]}])


# ----------------------------------------------------------------------------- tier 3
_AGG = {"sum": lambda c: pl.col(c).sum(), "mean": lambda c: pl.col(c).mean(),
        "count": lambda c: pl.len(), "n_unique": lambda c: pl.col(c).n_unique()}


def metric_values(cfg: DomainConfig, metric: MetricCheck, run_date: date, weeks: int) -> pl.DataFrame:
    """One value per day and group over the baseline window (zero-filled for additive metrics)."""
    start = run_date - timedelta(days=7 * weeks + 1)
    lf = storage.scan(cfg.lake, "gold", metric.table, missing_ok=True)
    if lf is None:
        return pl.DataFrame()
    day = pl.col(metric.date_column).cast(pl.Date)
    values = (lf.filter(day.is_between(start, run_date))
              .group_by(day.alias("day"), *metric.group_by)
              .agg(_AGG[metric.agg](metric.column).cast(pl.Float64).alias("value"))
              .collect())
    if metric.agg == "mean" or values.is_empty():
        return values
    # a group with no rows on a day sold nothing: 0, not a gap the baseline would skip
    days = pl.DataFrame({"day": pl.date_range(start, run_date, eager=True)})
    groups = values.select(metric.group_by).unique() if metric.group_by else pl.DataFrame({"_": [0]})
    grid = days.join(groups, how="cross").drop("_", strict=False)
    return grid.join(values, on=["day", *metric.group_by], how="left").with_columns(
        pl.col("value").fill_null(0.0))


def evaluate(values: pl.DataFrame, metric: MetricCheck, qc: QualityConfig, run_date: date) -> pl.DataFrame:
    """Pure: z-score, IQR and day-over-day checks of ``run_date`` against the same weekdays before.

    Mondays are held to Mondays: the baseline is the value on run_date - 7k (k = 1..weeks),
    and the day-over-day change is compared with the same weekday's usual change, so a
    weekly peak is not an anomaly.
    """
    column = metric.column or "*"
    if values.is_empty():
        return _frame([{"check": f"{metric.name}:{m}", "column": column, "tier": 3, "status": NO_BASELINE,
                        "failing_count": 0, "rows_checked": 0}
                       for m in ("zscore", "iqr", "volatility", "consensus")])
    keys = metric.group_by or ["_all"]  # one constant group when the metric is not split
    lag = (pl.lit(run_date) - pl.col("day")).dt.total_days()
    v = values.with_columns(lag.alias("lag"), *([] if metric.group_by else [pl.lit(0).alias("_all")]))
    today = v.filter(pl.col("lag") == 0).select(*keys, pl.col("value").alias("x"))
    yesterday = v.filter(pl.col("lag") == 1).select(*keys, pl.col("value").alias("prev"))
    base = v.filter(pl.col("lag") > 0, pl.col("lag") % 7 == 0).with_columns((pl.col("lag") // 7).alias("k"))
    base_prev = v.filter(pl.col("lag") > 1, pl.col("lag") % 7 == 1).select(
        *keys, ((pl.col("lag") - 1) // 7).alias("k"), pl.col("value").alias("p"))
    stats = base.group_by(keys).agg(
        pl.col("value").mean().alias("mean"), pl.col("value").std().alias("std"),
        pl.col("value").quantile(0.25, "linear").alias("q1"), pl.col("value").quantile(0.75, "linear").alias("q3"),
        pl.col("value").count().alias("n"))
    usual = base.join(base_prev, on=[*keys, "k"]).filter(pl.col("p") > 0).group_by(keys).agg(
        (pl.col("value") / pl.col("p") - 1).median().alias("usual_dod"))
    frame = (today.join(stats, on=keys, how="left").join(yesterday, on=keys, how="left")
             .join(usual, on=keys, how="left"))
    frame = frame.filter(pl.col("n") >= qc.min_baseline_days).with_columns(
        z=pl.when(pl.col("std") > 0).then((pl.col("x") - pl.col("mean")) / pl.col("std")),
        iqr_out=pl.when(pl.col("q3") > pl.col("q1")).then(
            pl.max_horizontal(pl.col("q1") - qc.iqr_factor * (pl.col("q3") - pl.col("q1")) - pl.col("x"),
                              pl.col("x") - pl.col("q3") - qc.iqr_factor * (pl.col("q3") - pl.col("q1")))
            / (pl.col("q3") - pl.col("q1"))),
        dod_dev=pl.when(pl.col("prev") > 0).then((pl.col("x") / pl.col("prev") - 1) - pl.col("usual_dod")),
    )
    # a statistically unusual value must also be materially different: with 8 baseline points
    # the spread is itself noisy, and a 5% move should not page anyone however small the std
    material = ((pl.col("x") - pl.col("mean")).abs() >= qc.min_relative_change * pl.col("mean").abs())
    checks = {
        "zscore": (pl.when(material).then(pl.col("z").abs()).otherwise(pl.col("z").abs().clip(None, qc.zscore)),
                   qc.zscore),
        # how many IQRs beyond the fence; > 0 is outside
        "iqr": (pl.when(material).then(pl.col("iqr_out")).otherwise(pl.col("iqr_out").clip(None, 0.0)), 0.0),
        "volatility": (pl.col("dod_dev").abs(), qc.max_volatility),
    }
    rows = []
    votes = frame.select(*keys, pl.lit(0).alias("votes"))
    for name, (measure, limit) in checks.items():
        scored = frame.with_columns(measure.alias("m"))
        votes = votes.with_columns(pl.col("votes") + (scored["m"] > limit).fill_null(False).cast(pl.Int32))
        scored = scored.drop_nulls("m")
        flagged = scored.filter(pl.col("m") > limit).sort("m", descending=True)
        examples = flagged.head(5).select(*metric.group_by, "x", "mean", "prev", "m").to_dicts()
        rows.append({
            "check": f"{metric.name}:{name}", "column": column, "tier": 3,
            "status": NO_BASELINE if scored.is_empty() else FLAGGED if flagged.height else PASS,
            "failing_count": flagged.height, "rows_checked": scored.height,
            "metric": scored["m"].max() if scored.height else None, "threshold": limit,
            "detail": json.dumps(examples, default=str) if examples else None})
    # what pages on-call: a group at least `alert_min_methods` of the methods agree on
    agreed = votes.filter(pl.col("votes") >= qc.alert_min_methods)
    rows.append({
        "check": f"{metric.name}:consensus", "column": column, "tier": 3,
        "status": NO_BASELINE if frame.is_empty() else FLAGGED if agreed.height else PASS,
        "failing_count": agreed.height, "rows_checked": frame.height,
        "metric": float(votes["votes"].max()) if votes.height else None, "threshold": float(qc.alert_min_methods),
        "detail": json.dumps(agreed.drop("_all", strict=False).head(5).to_dicts(), default=str)
        if agreed.height else None})
    return _frame(rows)


def statistical_checks(cfg: DomainConfig, run_date: date, run_id: str) -> dict[str, object]:
    """Tier 3 for ``run_date``: record every metric's results; alert once per flagged metric.

    A verdict is a record of what the check saw on the day it first ran, so it is written
    once per date and table: a rerun (which may see later corrections) keeps it. That keeps
    reruns idempotent; delete the partition to re-judge a day on purpose.
    """
    from lakehouse import alerts

    qc = cfg.quality
    flagged: dict[str, int] = {}
    kept: list[str] = []
    verdicts: list[Partition] = []
    for table in dict.fromkeys(m.table for m in qc.metrics):
        part = {"business_date": run_date.isoformat(), "dataset": f"gold.{table}"}
        if storage.exists(cfg.lake, "gold", TABLE, part):
            kept.append(table)
            continue
        frames = []
        for metric in (m for m in qc.metrics if m.table == table):
            results = evaluate(metric_values(cfg, metric, run_date, qc.baseline_weeks), metric, qc, run_date)
            frames.append(results)
            hits = results.filter(pl.col("status") == FLAGGED, ~pl.col("check").str.ends_with(":consensus"))
            agreed = results.filter(pl.col("check") == f"{metric.name}:consensus", pl.col("status") == FLAGGED)
            if agreed.height:
                flagged[metric.name] = int(agreed["failing_count"].item())
            what = "; ".join(f"{r['check'].split(':')[1]} {r['failing_count']} group(s), worst "
                             f"{r['metric']:.2f} > {r['threshold']:g}" for r in hits.to_dicts())
            alerts.track(f"anomaly:{cfg.name}:{metric.name}", agreed.height > 0, when=run_date.isoformat(),
                         problem=f":mag: *{metric.name}* looks unusual on {run_date} (gold.{table}, against the "
                                 f"same weekday of {qc.baseline_weeks} weeks): {what}; groups: "
                                 f"{agreed['detail'].item() if agreed.height else ''}. Not blocking; see "
                                 "gold.quality_checks.",
                         recovered=f":white_check_mark: *{metric.name}* is back to normal on {run_date}.")
        verdicts.append(_partition(pl.concat(frames), run_date, f"gold.{table}", run_id))
    if verdicts:  # every table's verdicts in one commit
        _publish(cfg, verdicts)
    log.info("tier-3 checks for %s: %d metric(s), flagged: %s, kept from an earlier run: %s",
             run_date, len(qc.metrics), flagged or "none", kept or "none")
    return {"metrics": len(qc.metrics), "flagged": flagged, "kept": kept}


def history(cfg: DomainConfig) -> pl.LazyFrame | None:
    """Every recorded check (all dates), for status and the report."""
    return storage.scan(cfg.lake, "gold", TABLE, missing_ok=True)
