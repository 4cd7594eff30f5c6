"""Entity contracts -> Polars types and pandera schemas (the validation gates)."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from lakehouse.config import ColumnContract, ConfigError, EntityContract, RowRule

POLARS_TYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(), "float64": pl.Float64(), "string": pl.String(), "bool": pl.Boolean(),
    "date": pl.Date(), "datetime": pl.Datetime("us"),
}


def polars_schema(contract: EntityContract) -> dict[str, pl.DataType]:
    return {c.name: POLARS_TYPES[c.type] for c in contract.columns}


def _checks(col: ColumnContract) -> list[pa.Check]:
    made = []
    for kind, build, value in (("ge", pa.Check.ge, col.ge), ("le", pa.Check.le, col.le),
                               ("isin", pa.Check.isin, col.isin), ("pattern", pa.Check.str_matches, col.pattern)):
        if value is None:
            continue
        given = col.checks.get(kind)
        named = {"name": given.name, "error": given.name} if given and given.name else {}
        made.append(build(value, **named))
    return made


@dataclass(frozen=True)
class Rule:
    """One row-level rule of a contract, as quarantine and the quality history name it."""

    column: str  # a column, a rule's columns joined by ",", or the key joined by "|"
    name: str
    max_reject_rate: float | None = None


def rules(contract: EntityContract) -> list[Rule]:
    """Every row-level rule: per column parse, not_nullable and its value checks (named by the
    column's ``checks:`` or by pandera's text), the cross-field rules, the unique version key."""
    schema = pandera_schema(contract)
    found: list[Rule] = []
    for col in contract.columns:
        kinds = [k for k, on in (("parse", col.type != "string"), ("not_nullable", not col.nullable)) if on]
        named = [(k, k) for k in kinds]
        value_kinds = [k for k, v in (("ge", col.ge), ("le", col.le), ("isin", col.isin), ("pattern", col.pattern))
                       if v is not None]
        named += [(k, check.error) for k, check in zip(value_kinds, schema.columns[col.name].checks, strict=True)]
        for kind, default in named:
            given = col.checks.get(kind)  # type: ignore[call-overload]
            found.append(Rule(col.name, (given.name if given and given.name else default),
                              given.max_reject_rate if given else None))
    names = [c.name for c in contract.columns]
    found += [Rule(",".join(r.columns(names)), r.name, r.max_reject_rate) for r in contract.rules]
    found.append(Rule("|".join(contract.primary_key), "multiple_fields_uniqueness"))
    return found


def renamed(contract: EntityContract) -> dict[tuple[str, str], str]:
    """(column, built-in name) -> the name a contract gave parse or not_nullable."""
    return {(c.name, kind): opts.name for c in contract.columns for kind, opts in c.checks.items()
            if opts.name and kind in ("parse", "not_nullable")}


def _row_rule(rule: RowRule, entity: str) -> pa.Check:
    """A frame-level pandera check with one boolean per row, so failures carry the row index."""
    try:
        expr = pl.sql_expr(rule.expr)
    except Exception as exc:  # polars raises several types for bad SQL
        raise ConfigError(f"contract {entity!r}: rule {rule.name!r}: {rule.expr!r} is not a Polars "
                          f"SQL expression: {exc}") from None
    return pa.Check(lambda data: data.lazyframe.select(expr.fill_null(True).alias(rule.name)),
                    name=rule.name, error=rule.name)


def pandera_schema(contract: EntityContract, *, unique: bool = True) -> pa.DataFrameSchema:
    """The row-level gate: types, nullability, ranges, allowed values, patterns, cross-field
    rules, unique versions.

    Run it on a collected frame: on a LazyFrame pandera checks only names and dtypes.
    ``unique=False`` leaves the version-key check to the caller (a batch validated in chunks
    finds duplicates across chunks itself: ``lakehouse.silver.duplicate_versions``).
    """
    version_key = [*contract.primary_key, *([contract.updated_at] if contract.updated_at else [])]
    return pa.DataFrameSchema(
        {c.name: pa.Column(POLARS_TYPES[c.type], checks=_checks(c), nullable=c.nullable)
         for c in contract.columns},
        checks=[_row_rule(r, contract.entity) for r in contract.rules],
        unique=version_key if unique else None,
        name=contract.entity,
        strict=False,  # lineage columns ride along
    )
