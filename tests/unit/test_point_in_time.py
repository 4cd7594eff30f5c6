from datetime import datetime

import polars as pl

from lakehouse.gold import (
    UNKNOWN_SK,
    point_in_time,
    surrogate_key,
    version_key,
    with_inferred_members,
)

DIM = pl.LazyFrame({
    "product_id": ["p", "p", "p", "q"],
    "valid_from": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 12, 0, 0, 1),
                   datetime(2024, 1, 1)],
    "version": pl.Series([1, 2, 3, 1], dtype=pl.Int32),
}).with_columns(version_key("product_id").alias("product_sk"))


def _sk(product: str, version: int) -> int:
    row = DIM.filter(pl.col("product_id") == product, pl.col("version") == version).collect()
    return row["product_sk"].item()


def _member(product: str) -> int:
    return pl.DataFrame({"p": [product]}).select(surrogate_key("p")).item()


def test_each_fact_gets_the_version_valid_at_its_event_time():
    facts = pl.LazyFrame({
        "line": ["before-first", "at-start", "just-before-change", "at-change", "after-two-changes",
                 "other-key", "not-yet-known", "null-key"],
        "product_id": ["p", "p", "p", "p", "p", "q", "zz", None],
        "ordered_at": [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 11, 59, 59),
                       datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 13), datetime(2024, 1, 2),
                       datetime(2024, 1, 2), datetime(2024, 1, 2)],
    })
    out = point_in_time(facts, DIM, key="product_id", at="ordered_at", sk="product_sk").collect()
    got = dict(zip(out["line"], out["product_sk"], strict=True))
    assert got == {
        "before-first": _sk("p", 1),  # known late: the member's first version
        "at-start": _sk("p", 1),  # validity is [valid_from, valid_to)
        "just-before-change": _sk("p", 1),
        "at-change": _sk("p", 2),
        "after-two-changes": _sk("p", 3),  # two changes on one day: the later one wins afterwards
        "other-key": _sk("q", 1),
        "not-yet-known": _member("zz"),  # the inferred member's key, kept when the record arrives
        "null-key": UNKNOWN_SK,
    }
    assert len(set(got.values())) == 6
    assert out.height == facts.collect().height  # a lookup never duplicates or drops facts


def test_first_version_key_is_the_member_key_so_inferred_members_keep_it():
    facts = pl.LazyFrame({"product_id": ["p", "zz", "zz", None]})
    dim = with_inferred_members(DIM, [facts], key="product_id", sk="product_sk").collect()
    inferred = dim.filter(pl.col("is_inferred"))
    assert inferred["product_id"].to_list() == ["zz"]
    assert inferred["product_sk"].item() == _member("zz")
    assert _sk("p", 1) == _member("p") and _sk("p", 2) != _member("p")
    # when zz's record arrives, its first version takes over the same key and the placeholder goes
    arrived = pl.concat([DIM, pl.LazyFrame({"product_id": ["zz"], "valid_from": [datetime(2024, 2, 1)],
                                            "version": pl.Series([1], dtype=pl.Int32)})
                         .with_columns(version_key("product_id").alias("product_sk"))])
    completed = with_inferred_members(arrived, [facts], key="product_id", sk="product_sk").collect()
    zz = completed.filter(pl.col("product_id") == "zz")
    assert zz["product_sk"].to_list() == [_member("zz")] and zz["is_inferred"].to_list() == [False]


def test_surrogate_keys_are_the_md5_of_the_natural_key_row_by_row():
    """Keys are hashed once per distinct value; each row must still get its own value's MD5
    key (the first 8 bytes, big-endian, low 62 bits), whatever the repeats and their order."""
    import hashlib
    import random

    rng = random.Random(7)
    names = [f"member-{i}" for i in range(300)] + ["", "ü|x", "<null>"]
    rows = [rng.choice(names) for _ in range(5_000)]
    second = [rng.choice(["a", None]) for _ in rows]
    got = pl.DataFrame({"k": rows, "v": second}).select(surrogate_key("k", "v"))["k"].to_list()
    want = [int.from_bytes(hashlib.md5(f"{k}|{v if v is not None else '<null>'}".encode()).digest()[:8], "big")
            & (2**62 - 1) for k, v in zip(rows, second, strict=True)]
    assert got == want
