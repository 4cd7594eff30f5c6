"""Keyed PII tokens: stable for one key, different for another, nulls kept, never the value."""

from __future__ import annotations

import polars as pl
import pytest

from lakehouse import pii
from lakehouse.config import ColumnContract, EntityContract
from lakehouse.silver import _quarantine_rows, split_valid, type_batch

KEY_A, KEY_B = b"a" * 32, b"b" * 32


def test_tokens_are_stable_per_key_and_keep_nulls():
    frame = pl.DataFrame({"email": ["x@example.com", None, "x@example.com", "y@example.com"], "n": [1, 2, 3, 4]})
    once, again = pii.tokenise(frame, ["email"], KEY_A), pii.tokenise(frame, ["email"], KEY_A)
    assert once.equals(again) and once["n"].to_list() == [1, 2, 3, 4]
    emails = once["email"].to_list()
    assert emails[0] == emails[2] != emails[3] and emails[1] is None
    assert all(e.startswith("pii_") and "@" not in e for e in emails if e)
    assert pii.tokenise(frame, ["email"], KEY_B)["email"][0] != emails[0]  # keyed: another key, another token


def test_a_short_key_is_refused(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PII_KEY", "short")
    with pytest.raises(pii.PiiKeyError, match="at least 16 bytes"):
        pii.key()


def test_without_a_key_a_home_generates_its_own_once(monkeypatch, tmp_path):
    monkeypatch.delenv("LAKEHOUSE_PII_KEY")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    first = pii.key()
    assert pii.key() == first and len(first) == 64
    path = tmp_path / ".secrets" / "pii.key"
    assert path.stat().st_mode & 0o777 == 0o600


def test_quarantined_records_keep_pii_as_tokens(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PII_KEY", (KEY_A).decode())
    contract = EntityContract(entity="customers", source="erp", primary_key=["id"], columns=[
        ColumnContract(name="id", type="string", nullable=False),
        ColumnContract(name="email", type="string", pii=True, pattern=r"^[^@]+@[^@]+$"),
        ColumnContract(name="age", type="int64", ge=0)])
    raw = pl.DataFrame({"id": ["1", "2"], "email": ["ok@example.com", "broken-at-example.com"], "age": ["-1", "3"],
                        "_source_pointer": ["f#1", "f#2"], "_record_hash": ["h1", "h2"]})
    typed, parse_failures = type_batch(raw, contract, where="test")
    _, failed = split_valid(typed, parse_failures, contract)
    q = _quarantine_rows(raw, failed, "run", contract)
    text = str(q.to_dicts())
    assert q.height == 2 and "example.com" not in text
    assert pii.token("broken-at-example.com", KEY_A) in text  # the offending value, as its token


def test_a_cross_field_rule_over_pii_shows_tokens_only(monkeypatch):
    """A rule reading a personal column names its values in quarantine as tokens, like a
    column check does."""
    from lakehouse.config import RowRule

    monkeypatch.setenv("LAKEHOUSE_PII_KEY", (KEY_A).decode())
    contract = EntityContract(entity="customers", source="erp", primary_key=["id"], columns=[
        ColumnContract(name="id", type="string", nullable=False),
        ColumnContract(name="email", type="string", pii=True),
        ColumnContract(name="age", type="int64")],
        rules=[RowRule(name="minor_without_email", expr="age >= 18 OR email LIKE '%@minor.example'")])
    raw = pl.DataFrame({"id": ["1"], "email": ["kid@home.example"], "age": ["12"],
                        "_source_pointer": ["f#1"], "_record_hash": ["h1"]})
    typed, parse_failures = type_batch(raw, contract, where="test")
    _, failed = split_valid(typed, parse_failures, contract)
    q = _quarantine_rows(raw, failed, "run", contract)
    assert q["rule"].to_list() == ["minor_without_email"]
    assert q["offending_value"][0] == f'{{"email":"{pii.token("kid@home.example", KEY_A)}","age":12}}'
    assert "home.example" not in str(q.to_dicts())

