from datetime import datetime

import polars as pl

from lakehouse.gold import UNKNOWN_SK, point_in_time

DIM = pl.LazyFrame({
    "product_id": ["p", "p", "p", "q"],
    "valid_from": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 12, 0, 0, 1),
                   datetime(2024, 1, 1)],
    "product_sk": [1, 2, 3, 9],
})


def test_each_fact_gets_the_version_valid_at_its_event_time():
    facts = pl.LazyFrame({
        "line": ["before-first", "at-start", "just-before-change", "at-change", "after-two-changes",
                 "other-key", "unknown"],
        "product_id": ["p", "p", "p", "p", "p", "q", "zz"],
        "ordered_at": [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 11, 59, 59),
                       datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 13), datetime(2024, 1, 2),
                       datetime(2024, 1, 2)],
    })
    out = point_in_time(facts, DIM, key="product_id", at="ordered_at", sk="product_sk").collect()
    got = dict(zip(out["line"], out["product_sk"], strict=True))
    assert got == {
        "before-first": 1,  # known late: the member's first version
        "at-start": 1,  # validity is [valid_from, valid_to)
        "just-before-change": 1,
        "at-change": 2,
        "after-two-changes": 3,  # two changes on one day: the later one wins afterwards
        "other-key": 9,
        "unknown": UNKNOWN_SK,
    }
    assert out.height == facts.collect().height  # a lookup never duplicates or drops facts
