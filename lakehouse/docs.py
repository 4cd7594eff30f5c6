"""What every served table and column means: the catalog's comments and the data dictionary.

A gold column's comment is, in order: what ``gold.yaml`` says of it (``columns:``); what the
framework says of the columns it makes (SCD2 validity, surrogate keys, the calendar, the ML
tables); else what its inputs say of a column of that name, when the tables the model reads
agree on one meaning (a column named ``name`` in two of them, a warehouse's and a
product's, inherits nothing: gold.yaml must say which it is). A column no rule documents has
no comment, and the tests of every shipped domain fail on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path

from lakehouse.config import DomainConfig, GoldTable

Comment = tuple[str, dict[str, str]]  # (table comment, {column: comment})

SCD2 = {
    "valid_from": "Start of this version's validity: the source's change time (UTC)",
    "valid_to": "End of this version's validity (exclusive); null while it is current",
    "is_current": "True for the key's current version",
    "version": "Version number of the key, from 1 (oldest)",
    "is_inferred": "A placeholder member for a key a fact referenced before the dimension had it; "
                   "completed in place when the key arrives",
    "is_deleted": "The source deleted the record: kept as its last version, flagged",
}
CALENDAR = {
    "date_sk": "Surrogate key of the day (YYYYMMDD)",
    "date": "The calendar day",
    "year": "Calendar year",
    "quarter": "Calendar quarter (1-4)",
    "month": "Month of the year (1-12)",
    "iso_week": "ISO 8601 week number",
    "day_of_week": "ISO day of the week (1 = Monday, 7 = Sunday)",
    "day_name": "Name of the weekday (Monday...)",
    "is_weekend": "Saturday or Sunday",
    "is_holiday": "A public holiday of the domain's country",
    "holiday_name": "Name of the public holiday; null on other days",
}


def contract_comments(cfg: DomainConfig) -> dict[str, dict[str, str]]:
    """``{silver entity: {column: description}}`` from the contracts."""
    return {ct.entity: {c.name: c.description for c in ct.columns if c.description} for ct in cfg.contracts}


def gold_inputs(cfg: DomainConfig, table: GoldTable) -> list[str]:
    """The tables a gold definition reads (its SQL's tables, its builder's parameters)."""
    from lakehouse import gold

    if table.sql is not None:
        return gold.sql_inputs(cfg, table.sql)
    if table.date_dimension is not None:
        return [table.date_dimension.table]
    builder = gold.load_builder(table.builder or "")
    return [p for p in inspect.signature(builder).parameters if p not in ("run_date", "partitions")]


def inherited(names: Iterable[str], known: dict[str, dict[str, str]]) -> dict[str, str]:
    """Column comments the tables ``names`` agree on: a column whose inputs describe it two
    ways inherits nothing."""
    seen: dict[str, set[str]] = {}
    for name in names:
        for column, text in known.get(name, {}).items():
            seen.setdefault(column, set()).add(text)
    return {column: next(iter(texts)) for column, texts in seen.items() if len(texts) == 1}


def table_comments(cfg: DomainConfig) -> dict[str, Comment]:
    """``{"layer.table": (table comment, {column: comment})}`` for every table the catalog serves."""
    from lakehouse.quality import DOCS, TABLE

    known: dict[str, dict[str, str]] = contract_comments(cfg)  # by bare name, as models read them
    out: dict[str, Comment] = {}
    for ct in cfg.contracts:
        # the contract's words win over the framework's (a source's own ``version`` column)
        cols = {k: v for k, v in SCD2.items() if k != "is_inferred"} | known[ct.entity]
        out[f"silver.{ct.entity}"] = (ct.description, cols)
        out[f"silver.stg_{ct.entity}"] = (f"Validated ingest batches of {ct.entity}", known[ct.entity])
    out["silver.quarantine"] = ("Rejected rows with rule, reason, offending value and source pointer", {})
    extra = framework_tables(cfg)
    dimensions = {g.name for g in cfg.gold if g.name.startswith("dim_")}
    keys = {f"{d.removeprefix('dim_')}_sk": f"Surrogate key of {d} (for a versioned dimension, of the "
            "version valid at the fact's time)" for d in dimensions}
    for g in cfg.gold:
        # priority: the model's own words, then what its inputs agree on, then the framework's;
        # a calendar is a date_dimension, or a builder named dim_date over gold.date_dimension
        calendar = g.date_dimension is not None or g.name == "dim_date"
        framework = SCD2 | keys | (CALENDAR if calendar else {})
        cols = framework | inherited(gold_inputs(cfg, g), known) | dict(g.columns)
        out[f"gold.{g.name}"] = (g.description, cols)
        known[g.name] = cols
    out[f"gold.{TABLE}"] = ("Quality history: one row per check per run (tiers 1-3, ADR 0011)", DOCS)
    out |= {f"gold.{name}": comment for name, comment in extra.items()}
    return out


def framework_tables(cfg: DomainConfig) -> dict[str, Comment]:
    """The gold tables made outside gold.yaml: the model registry and the domain's ML outputs."""
    if cfg.ml is None:
        return {}
    from lakehouse import registry, tasks

    try:
        forecast = tasks.forecast_module(cfg)
    except ModuleNotFoundError:  # a domain whose model code is not installed here: the registry's only
        return dict(registry.DOCS)
    return dict(registry.DOCS) | dict(getattr(forecast, "DOCS", {}))


def view_comments(cfg: DomainConfig, served: dict[str, Comment]) -> dict[str, dict[str, str]]:
    """``{"schema.view": {column: comment}}``: a view's ``columns:`` over what the tables it
    reads agree on (the same rule as gold models)."""
    import re

    by_name = {name: cols for name, (_, cols) in served.items()}
    out = {}
    for view in cfg.views:
        reads = set(re.findall(r"\b((?:bronze|silver|gold)\.[a-z0-9_]+)", view.sql))
        out[f"{view.schema_}.{view.name}"] = inherited(reads, by_name) | dict(view.columns)
    return out


def undocumented(con) -> list[tuple[str, str, str]]:
    """(schema, table, column) of every column analysts query (gold, report views, a view schema
    such as tpch) without a comment in an open catalog; lineage columns (a leading underscore) are the lake's, documented once in
    the README, and exempt."""
    return [tuple(r) for r in con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE schema_name NOT IN ('bronze', 'silver', 'main', 'information_schema', 'pg_catalog') "
        "AND NOT internal AND comment IS NULL AND NOT starts_with(column_name, '_') "
        "ORDER BY ALL").fetchall()]


def data_dictionary(con, title: str) -> str:
    """Markdown of every table of an open catalog: its comment, then its columns, types, comments."""
    tables = con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE NOT internal "
        "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() WHERE NOT internal "
        "ORDER BY 1, 2").fetchall()
    columns: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
    for schema, table, column, dtype, comment in con.execute(
            "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
            "WHERE NOT internal ORDER BY schema_name, table_name, column_index").fetchall():
        columns.setdefault((schema, table), []).append((column, dtype, comment))
    lines = [f"# {title}", "", "Generated by `lakehouse docs` from the catalog's own comments "
             "(contracts, gold.yaml, views.yaml and the framework's tables): the gold star schema and "
             "the views analysts query. Bronze and silver keep the sources' columns (their contracts "
             "describe them); a column starting with `_` is lineage (`_run_id`, `_source_pointer`, ...).", ""]
    for schema, table, comment in tables:
        if schema in ("main", "information_schema", "pg_catalog", "bronze", "silver"):
            continue
        lines += [f"## {schema}.{table}", "", comment or "", "", "| column | type | description |",
                  "|---|---|---|"]
        lines += [f"| `{c}` | {t} | {(d or '').replace('|', '/')} |" for c, t, d in columns.get((schema, table), [])]
        lines.append("")
    return "\n".join(lines)


def write_data_dictionary(cfg: DomainConfig, out: Path) -> Path:
    """``data_dictionary`` of the domain's served catalog, written to ``out``."""
    from lakehouse.catalog import connect_read_only

    with connect_read_only(cfg) as con:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(data_dictionary(con, f"{cfg.name}: data dictionary"))
    return out
