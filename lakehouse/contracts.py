"""Entity contracts -> Polars types and pandera schemas (the validation gates)."""

from __future__ import annotations

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
    checks = []
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge))
    if col.le is not None:
        checks.append(pa.Check.le(col.le))
    if col.isin is not None:
        checks.append(pa.Check.isin(col.isin))
    if col.pattern is not None:
        checks.append(pa.Check.str_matches(col.pattern))
    return checks


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
