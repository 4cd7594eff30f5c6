"""Names and values from configuration can't inject SQL or escape the lake (fuzzed)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lakehouse import storage
from lakehouse.catalog import _quote_ident, _quote_str
from lakehouse.config import IDENT, MetricCheck

NASTY = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["../..", "/", "..", ".", "%2e%2e", "a=b", "x\x00y", "a/b", "'; DROP TABLE t; --",
                     '"; DROP VIEW gold.v; --', "`rm -rf`", "ünïcødé", "日本", "a" * 300, "\\..\\", "$HOME"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=NASTY)
def test_a_partition_value_is_refused_or_reads_back_unchanged_inside_the_table(tmp_path, value):
    """Both table kinds: one file per partition (bronze) and Delta (gold, whose partition
    values are typed like Hive's: a value must still read back as the text it was)."""
    import uuid

    tmp_path = tmp_path / uuid.uuid4().hex  # a lake per example: a Delta column has one type
    try:
        target = storage.partition_dir(tmp_path, "gold", "t", {"k": value})
    except storage.StorageError:
        return
    for layer in ("bronze", "gold"):
        root = storage.table_dir(tmp_path, layer, "t")
        assert target.resolve().is_relative_to(storage.table_dir(tmp_path, "gold", "t").resolve()), target
        storage.publish(pl.DataFrame({"v": [1]}), tmp_path, layer, "t", {"k": value})
        assert {"k": value} in storage.partitions(tmp_path, layer, "t")
        assert all(Path(f).resolve().is_relative_to(root.resolve()) for f in storage.data_files(tmp_path, layer, "t"))


@settings(max_examples=200, deadline=None)
@given(name=NASTY)
def test_a_name_is_a_plain_identifier_or_refused_at_load_and_at_use(name):
    import re

    plain = re.fullmatch(IDENT, name) is not None
    try:
        MetricCheck(name=name, table="fct_x", date_column="d", column="c")
        loaded = True
    except ValidationError as exc:
        assert "name" in str(exc)  # the error names the field
        loaded = False
    try:
        storage.table_dir("/lake", "gold", name)
        used = True
    except storage.StorageError:
        used = False
    assert loaded == plain and (used <= plain)  # storage is at least as strict as the config


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_quoted_identifiers_and_strings_never_break_out_of_their_quotes(name):
    con = duckdb.connect()
    con.execute("CREATE SCHEMA gold")
    con.execute(f"CREATE VIEW gold.{_quote_ident(name)} AS SELECT {_quote_str(name)} AS value")
    views = con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'gold'").fetchall()
    assert views == [(name,)]  # exactly one object, named exactly so
    assert con.execute(f"SELECT value FROM gold.{_quote_ident(name)}").fetchone() == (name,)
    con.close()


@pytest.mark.parametrize("layer", ["bronze", "gold"])
@pytest.mark.parametrize("value", ["2026-01-01", "WH01", "a.b:c+d-e_f", "42"])
def test_ordinary_values_round_trip(tmp_path, value, layer):
    storage.publish(pl.DataFrame({"v": [1]}), tmp_path, layer, "t", {"k": value})
    assert storage.scan(tmp_path, layer, "t").select(pl.col("k").cast(pl.String)).collect().item() == value


@pytest.mark.parametrize("layer", [
    # Hive inference reads the file protocol's folder k=007 back as 7 (known, not fixed: its
    # partition values are dates); a Delta table keeps the text
    pytest.param("bronze", marks=pytest.mark.xfail(reason="Hive-inferred folder value", strict=True)),
    "gold"])
def test_a_zero_padded_code_reads_back_as_text(tmp_path, layer):
    storage.publish(pl.DataFrame({"v": [1]}), tmp_path, layer, "t", {"k": "007"})
    assert storage.scan(tmp_path, layer, "t").select(pl.col("k").cast(pl.String)).collect().item() == "007"
