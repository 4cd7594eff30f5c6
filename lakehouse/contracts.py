"""Entity contracts -> Polars types and pandera schemas (the validation gates)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lakehouse.config import ColumnContract, EntityContract

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


def pandera_schema(contract: EntityContract) -> pa.DataFrameSchema:
    """The row-level gate: types, nullability, ranges, allowed values, patterns, unique versions.

    Run it on a collected frame: on a LazyFrame pandera checks only names and dtypes.
    """
    version_key = [*contract.primary_key, *([contract.updated_at] if contract.updated_at else [])]
    return pa.DataFrameSchema(
        {c.name: pa.Column(POLARS_TYPES[c.type], checks=_checks(c), nullable=c.nullable)
         for c in contract.columns},
        unique=version_key,
        name=contract.entity,
        strict=False,  # lineage columns ride along
    )
