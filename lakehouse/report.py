"""``lakehouse report``: a self-contained HTML health dashboard of one domain.

Pipeline health (runs, durations, retries, failures, from the run history the DAGs'
callbacks record), freshness per table, rows per layer per day over the last
``WINDOW_DAYS`` days (Parquet metadata only, no data scanned) and quarantine over time,
as Plotly charts. plotly.js is
inlined once, so the file opens offline, from a mail attachment or an artifact
store, with no server. Written atomically: a reader never sees half a report.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from lakehouse import freshness, runlog, status, storage
from lakehouse.config import DomainConfig

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933;background:#f7f8fa}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #d9dee5;padding-bottom:4px}
.meta{color:#616e7c}.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.kpi{background:#fff;border:1px solid #d9dee5;border-radius:8px;padding:10px 16px;min-width:150px}
.kpi b{display:block;font-size:26px}.bad b{color:#c62828}.good b{color:#2e7d32}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #d9dee5;padding:4px 8px;text-align:left}th{background:#eef1f5}
.ok{color:#2e7d32;font-weight:600}.stale{color:#c62828;font-weight:600}.empty{color:#616e7c;font-style:italic}
"""


def default_path(cfg: DomainConfig) -> Path:
    """Next to the DuckDB catalog: ``<catalog dir>/reports/<domain>_health.html``."""
    return Path(cfg.catalog_path).parent / "reports" / f"{cfg.name}_health.html"


# --------------------------------------------------------------------------- data
# the charts show this many days before the report's date: a dashboard's window, and what
# keeps the report's cost flat as history grows (each partition's footer is read)
WINDOW_DAYS = 120


def rows_per_day(lake: Path, since: date | None = None) -> pl.DataFrame:
    """Rows per layer and date partition, from metadata only: Delta logs, else Parquet footers
    (partitions dated ``since`` or later only, when given: older footers are not opened).

    Bronze and silver batches are partitioned by ingest date; gold facts and aggregates
    by business date; quarantine is shown apart (``quarantine`` layer). The quality
    history is about the data, not data: it has its own chart.
    """
    from lakehouse.quality import TABLE as QUALITY

    def _day(values: dict[str, str]) -> date | None:
        day = next((v for v in values.values() if freshness.DATE_VALUE.match(v)), None)
        return date.fromisoformat(day) if day else None

    def in_window(values: dict[str, str]) -> bool:
        day = _day(values)
        return day is not None and (since is None or day >= since)

    out = []
    for layer in ("bronze", "silver", "gold"):
        for table in storage.tables(lake, layer):
            if (layer, table) == ("gold", QUALITY):
                continue
            name = "quarantine" if table.startswith("quarantine") else layer
            for values, _, rows in storage.partition_rows(lake, layer, table, keep=in_window):
                out.append((name, table, _day(values), rows))
    return pl.DataFrame(out, schema={"layer": pl.String, "table": pl.String, "date": pl.Date,
                                     "rows": pl.Int64}, orient="row")


def quarantine_per_day(lake: Path) -> pl.DataFrame:
    """Rejected rows per ingest date, entity and rule."""
    lf = storage.scan(lake, "silver", "quarantine", missing_ok=True)
    if lf is None:
        return pl.DataFrame(schema={"ingest_date": pl.Date, "entity": pl.String, "rule": pl.String,
                                    "rows": pl.UInt32})
    return (lf.group_by(pl.col("ingest_date").cast(pl.String).str.to_date(), "entity", "rule")
            .agg(pl.len().alias("rows")).sort("ingest_date", "entity", "rule").collect())


def quality_per_day(cfg: DomainConfig) -> pl.DataFrame:
    """Checks per business date by tier and status, from the quality history."""
    from lakehouse import quality

    lf = quality.history(cfg)
    if lf is None:
        return pl.DataFrame()
    return (lf.group_by(pl.col("business_date").cast(pl.String),
                        pl.format("tier {}: {}", "tier", "status").alias("outcome"))
            .agg(pl.len().alias("checks")).sort("business_date", "outcome").collect())


def daily_grid(volumes: pl.DataFrame) -> pl.DataFrame:
    """Pure: rows per layer on every day of the volumes' span, null on a day without rows, so a
    line breaks there instead of joining two distant days (and a log axis never meets a 0)."""
    per_layer = (volumes.group_by("layer", "date").agg(pl.col("rows").sum())
                 .filter(pl.col("rows") > 0))
    if per_layer.height == 0:
        return per_layer
    days = pl.DataFrame({"date": pl.date_range(per_layer["date"].min(), per_layer["date"].max(), "1d",
                                               eager=True)})
    return (days.join(per_layer.select("layer").unique(), how="cross")
            .join(per_layer, on=["layer", "date"], how="left").sort("layer", "date"))


# --------------------------------------------------------------------------- charts
# given to each chart as it is made: setting it afterwards (update_layout) deep-copies the
# template again per chart, 40% of the dashboard's time
TEMPLATE = "plotly_white"


def _chart(fig, first: list[bool]) -> str:
    include = first[0]
    first[0] = False
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=340)
    return fig.to_html(full_html=False, include_plotlyjs=include, config={"displaylogo": False})


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _table(frame: pl.DataFrame, classes: dict[str, str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for col, value in row.items():
            css = (classes or {}).get(f"{col}={value}", "")
            cells.append(f'<td class="{css}">{html.escape("" if value is None else str(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _kpi(label: str, value: object, bad: bool | None = None) -> str:
    css = "" if bad is None else (" bad" if bad else " good")
    return f'<div class="kpi{css}">{html.escape(label)}<b>{html.escape(str(value))}</b></div>'


def render(cfg: DomainConfig, as_of: date | None = None) -> str:
    """The dashboard as one HTML document (plotly.js inlined)."""
    import plotly.express as px

    as_of = as_of or freshness.default_as_of(cfg)
    first = [True]  # plotly.js goes into the first chart only
    tries = runlog.read(cfg.lake)
    runs = runlog.run_summary(tries)
    daily = runs.filter(pl.col("dag_id") == f"{cfg.name}_daily")
    fresh = freshness.check(cfg, as_of)
    since = as_of - timedelta(days=WINDOW_DAYS)
    volumes = rows_per_day(cfg.lake, since=since)
    # the same window as the volumes: a day's reject rate needs that day's staged rows
    rejects = quarantine_per_day(cfg.lake).filter(pl.col("ingest_date") >= since)

    failed_runs = daily.filter(pl.col("state") == "failed").height
    stale = [f for f in fresh if not f.fresh]
    # the number `lakehouse status` shows: records first rejected by the latest staged batch (a
    # day that rejected nothing shows 0, not an older day's count; a re-read record counts once)
    newly = status.quarantine_summary(cfg)
    latest_day = newly["latest_day"][0] if newly.height else None
    latest_rejects = int(newly["rows_latest_day"].sum()) if newly.height else 0
    parts = [
        f"<h1>{html.escape(cfg.name)}: lakehouse health</h1>",
        f'<p class="meta">generated {datetime.now(UTC).isoformat(timespec="seconds")} · freshness as of '
        f"{as_of} · lake {html.escape(str(cfg.lake))}</p>",
        '<div class="kpis">',
        _kpi("daily runs recorded", daily.height),
        _kpi("failed daily runs", failed_runs, failed_runs > 0),
        _kpi("retries", int(daily["retries"].sum()) if daily.height else 0),
        _kpi("stale tables", f"{len(stale)} / {len(fresh)}", bool(stale)),
        _kpi(f"rows newly rejected ({latest_day or 'no batch yet'})", latest_rejects, None),
        "</div>",
        "<h2>Pipeline runs</h2>",
    ]
    if runs.height:
        fig = px.bar(runs.with_columns(pl.col("business_date").cast(pl.String)),
                     x="business_date", y="seconds", color="state", facet_row="dag_id",
                     hover_data=["run_id", "tasks", "retries", "failed"],
                     color_discrete_map={"success": "#2e7d32", "failed": "#c62828"}, log_y=True,
                     template=TEMPLATE, title="Run duration per business date (latest execution; log scale, so a short "
                           "failed run stays visible beside an initial load)")
        parts.append(_chart(fig, first))
        per_task = (tries.filter(pl.col("state") == "success").group_by("dag_id", "task_id")
                    .agg(pl.col("seconds").median().alias("median_s"), pl.len().alias("tries"))
                    .sort("median_s", descending=True))
        fig = px.bar(per_task, x="task_id", y="median_s", color="dag_id",
                     template=TEMPLATE, title="Where the time goes: median seconds per task")
        parts.append(_chart(fig, first))
        failures = (tries.filter(pl.col("state").is_in(["failed", "up_for_retry"]))
                    .select("dag_id", "business_date", "task_id", "try_number", "state", "error").tail(20))
        parts += ["<h3>Latest failures and retries</h3>",
                  _table(failures) if failures.height else _empty("none recorded")]
    else:
        parts.append(_empty("no runs recorded yet: the DAGs' task callbacks record each task try"))

    parts.append(f"<h2>Freshness (as of {as_of})</h2>")
    if fresh:
        frame = pl.DataFrame({"table": [f.table for f in fresh], "newest date": [f.latest for f in fresh],
                              "lag (days)": [f.lag_days for f in fresh],
                              "allowed (days)": [f.max_lag_days for f in fresh],
                              "status": ["ok" if f.fresh else "stale" for f in fresh]})
        parts.append(_table(frame, {"status=ok": "ok", "status=stale": "stale"}))
    else:
        parts.append(_empty("no freshness windows configured (domain.yaml: freshness)"))

    parts.append("<h2>Rows per layer per day</h2>")
    if volumes.height:
        fig = px.line(daily_grid(volumes), x="date", y="rows", color="layer", markers=True, log_y=True,
                      template=TEMPLATE, title="Rows per date partition (bronze/silver: ingest date; gold: business date; "
                            "a gap is a day without rows)")
        parts.append(_chart(fig, first))
    else:
        parts.append(_empty("the lake holds no dated partitions yet"))

    parts.append("<h2>Quarantine and quality over time</h2>")
    if rejects.height:
        fig = px.bar(rejects.with_columns(pl.concat_str("entity", pl.lit(": "), "rule").alias("check"))
                     , x="ingest_date", y="rows", color="check",
                     template=TEMPLATE, title="Rejected rows per ingest date and rule")
        parts.append(_chart(fig, first))
        staged = (volumes.filter(pl.col("table").str.starts_with("stg_"))
                  .with_columns(pl.col("table").str.strip_prefix("stg_").alias("entity"))
                  .select("entity", pl.col("date").alias("ingest_date"), pl.col("rows").alias("passed")))
        rate = (rejects.group_by("ingest_date", "entity").agg(pl.col("rows").sum().alias("rejected"))
                .join(staged, on=["ingest_date", "entity"], how="left")
                .with_columns((100 * pl.col("rejected") / (pl.col("rejected") + pl.col("passed").fill_null(0)))
                              .alias("reject_rate_pct")).sort("ingest_date"))
        # percent as numbers: plotly picks distinct ticks (a '.1%' format repeated 0.2%, 0.2%, ...)
        fig = px.line(rate, x="ingest_date", y="reject_rate_pct", color="entity", markers=True,
                      labels={"reject_rate_pct": "% of the day's rows rejected"},
                      template=TEMPLATE, title="Share of each day's rows rejected, per entity")
        parts.append(_chart(fig, first))
    else:
        parts.append(_empty("no rows quarantined"))

    checks = quality_per_day(cfg)
    if checks.height:
        fig = px.bar(checks, x="business_date", y="checks", color="outcome",
                     template=TEMPLATE, title="Quality checks per business date: tier and status (gold.quality_checks)",
                     category_orders={"outcome": sorted(checks["outcome"].unique())})
        parts.append(_chart(fig, first))
    else:
        parts.append(_empty("no quality checks recorded yet"))

    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(cfg.name)} "
            f"lakehouse health</title><style>{_CSS}</style></head><body>{body}</body></html>")


def write_report(cfg: DomainConfig, out: Path | None = None, as_of: date | None = None) -> Path:
    """Render and atomically publish the dashboard; returns its path."""
    import os
    import uuid

    target = Path(out or default_path(cfg))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(render(cfg, as_of), encoding="utf-8")
    os.replace(tmp, target)
    return target
