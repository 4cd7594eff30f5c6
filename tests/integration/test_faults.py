"""Fault injection into the file drop: each fault meets the right tier, nothing invalid reaches
gold, and every row is accounted for (bronze rows = staged + quarantined, per file and day)."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from lakehouse import bronze, quality, silver, storage
from lakehouse.extract.files import FileError
from tests.conftest import START, run_day_direct
from tests.integration.test_pipeline import accounted

DAY = START + timedelta(days=1)
TABLE = "inventory_drop__inventory_counts"


def _landed(tiny, ext: str) -> Path:
    """The count file of extension ``ext`` that arrives during ``DAY``."""
    landing = Path(tiny.cfg.source("inventory_drop").landing_dir)
    return sorted(landing.glob(f"inventory_*_{DAY - timedelta(days=1):%Y%m%d}.{ext}"))[0]


def _rewrite(path: Path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, (stat.st_atime, stat.st_mtime))  # same arrival time


@pytest.fixture
def day_one(tiny):
    tiny.advance(START)
    run_day_direct(tiny.cfg, START)
    tiny.advance(DAY)
    return tiny


FILE_FAULTS = {
    "empty": ("csv", lambda data: b"", "empty file"),
    "truncated": ("csv", lambda data: data[: len(data) // 2 - 3], "truncated"),
    "wrong_encoding": ("csv", lambda data: data.replace(b"WH", "WÄ".encode("latin-1"), 1), "cannot be read"),
    "corrupt_xlsx": ("xlsx", lambda data: data[:200] + b"\x00" * 64, "cannot be read as .xlsx"),
}


def _rows_of(path: Path) -> int:
    """A landed file's data rows, read apart from the pipeline's reader."""
    if path.suffix == ".csv":
        return len(path.read_text().splitlines()) - 1
    return pl.read_excel(path, engine="calamine").height


@pytest.mark.parametrize("fault", FILE_FAULTS)
def test_a_broken_file_is_set_aside_and_the_rest_of_the_day_goes_on(day_one, fault, monkeypatch, tmp_path):
    """``on_unreadable_file: set_aside`` (the default): the broken file is kept in the lake with
    its reason and none of its rows; every other file of the day and every other source reach
    bronze, silver and gold that same day (counted from the landing folder); on-call hears once;
    a corrected re-drop is taken by the next run, which sends the recovery."""
    from tests.fakes.slack import FakeSlack

    ext, corrupt, message = FILE_FAULTS[fault]
    path = _landed(day_one, ext)
    original = path.read_bytes()
    _rewrite(path, corrupt(original))
    landing = Path(day_one.cfg.source("inventory_drop").landing_dir)
    taken_before = set(storage.scan(day_one.cfg.lake, "bronze", TABLE).select(
        pl.col("_source_pointer").str.extract(r"^(.*)#row=")).collect().to_series())
    _, end = bronze.day_bounds_utc(DAY, day_one.cfg.timezone)
    arrived = {p for p in landing.iterdir() if p.suffix in (".csv", ".xlsx")
               and p.stat().st_mtime < end.replace(tzinfo=UTC).timestamp()}
    expected = {p.name: _rows_of(p) for p in arrived if p.name not in taken_before and p != path}
    assert expected, "the day has other files to go on with"

    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        outcomes = run_day_direct(day_one.cfg, DAY)  # the whole day succeeds
        run_day_direct(day_one.cfg, DAY)  # and a rerun of it: one incident, not two messages
        pages = [t for t in fake.texts() if "set aside" in t]
        assert len(pages) == 1 and path.name in pages[0] and message in pages[0], fake.texts()

        assert [f.split(":")[0] for f in outcomes["extract_inventory_drop"].result["set_aside"]] == [path.name]
        day = pl.col("_source_pointer").str.extract(r"^(.*)#row=")
        bronze_day = storage.scan(day_one.cfg.lake, "bronze", TABLE).filter(
            pl.col("ingest_date").cast(pl.String) == DAY.isoformat()).group_by(day.alias("file")).len().collect()
        assert dict(bronze_day.iter_rows()) == expected  # every other file whole, the broken one not at all
        assert storage.exists(day_one.cfg.lake, "bronze", "erp__order_lines", {"ingest_date": DAY.isoformat()})
        fct = storage.scan(day_one.cfg.lake, "gold", "fct_inventory_daily").filter(
            pl.col("count_date").cast(pl.Date) >= DAY - timedelta(days=1)).collect()
        assert fct.height > 0
        accounted(day_one.cfg)

        [kept] = bronze.set_aside_files(day_one.cfg)
        assert (kept["file"], kept["state"], kept["ingest_date"]) == (path.name, "set aside", DAY.isoformat())
        assert message in kept["reason"] and Path(kept["kept_at"]).read_bytes() == corrupt(original)

        # corrected upstream and dropped again: the next day's run takes it, and on-call hears it recovered
        _rewrite(path, original)
        day_one.advance(DAY + timedelta(days=1))
        run_day_direct(day_one.cfg, DAY + timedelta(days=1))
        pointers = storage.scan(day_one.cfg.lake, "bronze", TABLE).filter(
            pl.col("ingest_date").cast(pl.String) == (DAY + timedelta(days=1)).isoformat()).select(
            day.alias("file")).collect()
        assert (pointers["file"] == path.name).sum() == _rows_of(path)
        assert bronze.set_aside_files(day_one.cfg)[0]["state"] == "taken again"
        assert any("read every file" in t for t in fake.texts())
    accounted(day_one.cfg)


def test_a_broken_file_blocks_the_batch_when_the_source_says_fail(day_one):
    """``on_unreadable_file: fail``: the source's batch is not published at all, nothing of the
    lake or its state changes, and the same day runs once the file is fixed."""
    ext, corrupt, message = FILE_FAULTS["truncated"]
    cfg = day_one.cfg.model_copy(update={"sources": [
        s.model_copy(update={"on_unreadable_file": "fail"}) if s.name == "inventory_drop" else s
        for s in day_one.cfg.sources]})
    path = _landed(day_one, ext)
    original = path.read_bytes()
    _rewrite(path, corrupt(original))
    state = storage.layer_hashes(cfg.lake)
    registry = sorted((cfg.lake / "_state").rglob("*.json"))
    with pytest.raises(FileError, match=rf"{path.name}.*{message}|{message}.*{path.name}"):
        bronze.ingest(cfg, "inventory_drop", DAY, "test")
    assert not storage.exists(cfg.lake, "bronze", TABLE, {"ingest_date": DAY.isoformat()})
    assert storage.layer_hashes(cfg.lake) == state
    assert sorted((cfg.lake / "_state").rglob("*.json")) == registry
    # fixed upstream: the same day now runs, and the file is taken (it was never registered)
    _rewrite(path, original)
    run_day_direct(cfg, DAY)
    pointers = storage.scan(cfg.lake, "bronze", TABLE).select("_source_pointer").collect()
    assert pointers["_source_pointer"].str.starts_with(path.name).any()
    accounted(cfg)


def test_bad_rows_are_quarantined_by_rule_and_the_rest_proceed(day_one, monkeypatch):
    # a tiny file: 5 bad rows of 29 would pass the 5% escalation, which has its own test
    contracts = [c.model_copy(update={"max_quarantine_rate": 0.5}) if c.entity == "inventory_counts" else c
                 for c in day_one.cfg.contracts]
    day_one.cfg = day_one.cfg.model_copy(update={"contracts": contracts})
    path = _landed(day_one, "csv")
    rows = list(csv.reader(path.read_text().splitlines()))
    header, good = rows[0], rows[1]
    idx = {c: i for i, c in enumerate(header)}

    def variant(**changes: str) -> list[str]:
        row = list(good)
        for col, value in changes.items():
            row[idx[col]] = value
        return row

    bad = [variant(sku=""),                 # null key
           list(good),                      # an exact copy of the first row: collapses into it
           variant(on_hand=str(int(good[idx["on_hand"]]) + 1)),  # same key, other count: a conflict
           variant(sku="SKU000999", on_hand="-4"),  # negative count
           variant(sku="SKU000998", on_hand="12.5"),  # unparseable as an integer
           variant(sku="SKU999999")]         # orphan product: valid, completed as an inferred member
    arrived = path.stat()
    with path.open("a", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(bad)
    os.utime(path, (arrived.st_atime, arrived.st_mtime))  # same arrival time
    run_day_direct(day_one.cfg, DAY)

    q = storage.scan(day_one.cfg.lake, "silver", "quarantine").filter(
        pl.col("entity") == "inventory_counts", pl.col("ingest_date").cast(pl.String) == DAY.isoformat()).collect()
    rules = dict(zip(q["source_pointer"], q["rule"], strict=True))
    first = len(rows) + 1  # line numbers: header is line 1
    assert "not_nullable" in rules[f"{path.name}#row={first}"]
    assert any("multiple_fields_uniqueness" in r for r in rules.values())
    dup = q.filter(pl.col("rule") == "multiple_fields_uniqueness")["column"].unique().to_list()
    assert dup == ["count_date|warehouse_id|product_id"]  # a duplicate names its key
    assert f"{path.name}#row={first + 1}" not in rules  # the copy was not refused, it collapsed
    # the conflict refuses both disagreeing versions: the original row and its rival
    assert "multiple_fields_uniqueness" in rules[f"{path.name}#row={first + 2}"]
    assert "multiple_fields_uniqueness" in rules[f"{path.name}#row=2"]
    assert "greater_than_or_equal_to(0.0)" in rules[f"{path.name}#row={first + 3}"]
    assert "parse" in rules[f"{path.name}#row={first + 4}"]
    assert f"{path.name}#row={first + 5}" not in rules  # the orphan is valid data

    # validated in chunks of 7 rows (the duplicate pair now spans chunks), the batch stages
    # and quarantines exactly the same rows as in one piece
    before = {t: storage.content_hash(day_one.cfg.lake, "silver", t) for t in ("stg_inventory_counts", "quarantine")}
    monkeypatch.setattr(silver, "STAGE_CHUNK_ROWS", 7)
    silver.stage(day_one.cfg, "inventory_counts", DAY, "test")
    assert {t: storage.content_hash(day_one.cfg.lake, "silver", t) for t in before} == before
    # and its copies and duplicates searched a hash bucket at a time (a pass per 5 rows): the same
    monkeypatch.setattr(silver, "DEDUP_PASS_ROWS", 5)
    silver.stage(day_one.cfg, "inventory_counts", DAY, "test")
    assert {t: storage.content_hash(day_one.cfg.lake, "silver", t) for t in before} == before

    fct = storage.scan(day_one.cfg.lake, "gold", "fct_inventory_daily").collect()
    assert fct.filter(pl.col("on_hand") < 0).is_empty()  # nothing invalid in gold
    assert fct.filter(pl.col("product_id") == "SKU999999").height == 1
    dim = storage.scan(day_one.cfg.lake, "gold", "dim_product").filter(pl.col("product_id") == "SKU999999").collect()
    assert dim.height == 1  # the inferred member
    accounted(day_one.cfg)


def test_a_batch_outside_its_expected_row_count_blocks(day_one):
    from lakehouse import silver
    from lakehouse.config import RowCount
    from lakehouse.silver import QualityGateError

    cfg = day_one.cfg
    contracts = [c.model_copy(update={"expected_rows": RowCount(min=10_000)}) if c.entity == "orders" else c
                 for c in cfg.contracts]
    cfg = cfg.model_copy(update={"contracts": contracts})
    bronze.ingest(cfg, "erp", DAY, "test")
    with pytest.raises(QualityGateError, match=r"bronze\.erp__orders ingest_date=.*rows, expected between 10000"):
        silver.stage(cfg, "orders", DAY, "test")
    assert not storage.exists(cfg.lake, "silver", "stg_orders", {"ingest_date": DAY.isoformat()})
    quality.publish_held(cfg, DAY)  # as the run's write_report does on a day a gate blocked
    row = storage.scan(cfg.lake, "gold", "quality_checks").filter(
        pl.col("dataset") == "silver.orders", pl.col("business_date").cast(pl.String) == DAY.isoformat()
    ).collect().row(0, named=True)
    assert (row["check"], row["status"], row["tier"]) == ("row_count", "blocked", 1)


def test_a_days_check_results_are_one_commit_and_a_blocked_day_publishes_them_too(day_one):
    """Every silver batch of a day records its tier-1/2 results in gold.quality_checks, all in
    one commit (one per batch made every day's commits slower: each lists the table's log);
    on a day a gate blocks one batch (no build_gold), the blocked batch and the others are
    published all the same, by write_report, and nothing stays held."""
    from lakehouse import delta, steps
    from lakehouse.config import RowCount

    cfg, table = day_one.cfg, storage.table_dir(day_one.cfg.lake, "gold", "quality_checks")
    entities = {f"silver.{c.entity}" for c in cfg.contracts}
    day_two = DAY + timedelta(days=1)

    def commits_since(version: int) -> list[dict]:
        return [h for h in delta.history(table) if h["version"] > version]

    def datasets(day) -> dict[str, set[str]]:
        rows = storage.scan(cfg.lake, "gold", "quality_checks").filter(pl.col("business_date") == day).collect()
        return {d: set(g["status"]) for (d,), g in rows.group_by("dataset")}

    before = delta.version(table)
    run_day_direct(cfg, DAY)
    writes = [h for h in commits_since(before) if h["operation"] == "WRITE"]
    assert len(writes) == 2, writes  # the silver batches', and tier 3's (every metric table at once)
    assert set(datasets(DAY)) >= entities  # every batch's results, from that one commit
    assert not storage.find(storage.state_path(cfg.lake, quality.HELD), "*/*.json")

    # day two: the orders batch is refused by its row-count gate, so no build_gold runs
    blocked = cfg.model_copy(update={"contracts": [
        c.model_copy(update={"expected_rows": RowCount(min=10_000)}) if c.entity == "orders" else c
        for c in cfg.contracts]})
    day_one.advance(day_two)
    with pytest.raises(steps.StepsFailed) as failed:
        steps.run_local(steps.DAILY, steps.RunContext(cfg=blocked, run_date=day_two, run_id="blocked"))
    assert set(failed.value.failed) == {"silver_orders"}
    assert failed.value.outcomes["build_gold"].state == "upstream_failed"
    found = datasets(day_two)
    assert set(found) == entities and found["silver.orders"] == {"blocked"}
    assert not storage.find(storage.state_path(cfg.lake, quality.HELD), "*/*.json")


def test_negative_quantities_and_out_of_range_prices_from_the_erp_are_quarantined(day_one):
    """Row faults in the relational source: the rows go to quarantine naming the column and
    the rule, the rest of the batch proceeds, gold holds nothing out of range."""
    import sqlalchemy as sa

    engine = sa.create_engine(day_one.cfg.source("erp").url)
    with engine.begin() as conn:
        # two lines first seen today (one version each), so no earlier version sits in gold
        fresh = [r[0] for r in conn.execute(sa.text(
            "SELECT order_line_id FROM order_lines GROUP BY order_line_id HAVING count(*) = 1 "
            "ORDER BY max(updated_at) DESC, order_line_id LIMIT 2"))]
        conn.execute(sa.text("UPDATE order_lines SET quantity = -3 WHERE order_line_id = :i"), {"i": fresh[0]})
        conn.execute(sa.text("UPDATE order_lines SET unit_price = 5e6 WHERE order_line_id = :i"), {"i": fresh[1]})
    engine.dispose()
    run_day_direct(day_one.cfg, DAY)

    q = storage.scan(day_one.cfg.lake, "silver", "quarantine").filter(
        pl.col("entity") == "order_lines", pl.col("ingest_date").cast(pl.String) == DAY.isoformat()).collect()
    by_line = {json.loads(r["record"])["order_line_id"]: (r["column"], r["rule"])
               for r in q.iter_rows(named=True)}
    assert by_line[fresh[0]][0] == "quantity" and "greater_than_or_equal_to(1" in by_line[fresh[0]][1]
    assert by_line[fresh[1]][0] == "unit_price" and "less_than_or_equal_to(100000" in by_line[fresh[1]][1]
    fct = storage.scan(day_one.cfg.lake, "gold", "fct_order_lines").collect()
    assert fct.filter(pl.col("order_line_id").is_in(fresh)).is_empty()
    assert fct.filter((pl.col("quantity") < 1) | (pl.col("unit_price") > 100_000)).is_empty()
    assert fct.filter(pl.col("order_date").cast(pl.Date) >= DAY - timedelta(days=1)).height > 0  # the rest went on
    accounted(day_one.cfg)


def test_named_rules_name_their_rejects_and_a_rule_over_its_own_limit_blocks(day_one):
    """A contract names a check (``checks: {ge: {name, max_reject_rate}}``): quarantine and the
    quality history carry that name; one rule rejecting more than its own share blocks the batch
    even under the entity's max_quarantine_rate, so a rule cannot quietly remove a category."""
    import sqlalchemy as sa

    from lakehouse.config import CheckOptions
    from lakehouse.silver import QualityGateError

    engine = sa.create_engine(day_one.cfg.source("erp").url)
    with engine.begin() as conn:
        line = conn.execute(sa.text("SELECT order_line_id FROM order_lines GROUP BY order_line_id "
                                    "HAVING count(*) = 1 ORDER BY max(updated_at) DESC LIMIT 1")).scalar()
        conn.execute(sa.text("UPDATE order_lines SET quantity = -3 WHERE order_line_id = :i"), {"i": line})
    engine.dispose()

    def named(limit: float | None):
        lines = day_one.cfg.contract("order_lines")
        columns = [c.model_copy(update={"checks": {"ge": CheckOptions(name="positive_quantity", max_reject_rate=limit),
                                                   "parse": CheckOptions(name="quantity_is_a_number")}})
                   if c.name == "quantity" else c for c in lines.columns]
        contract = lines.model_copy(update={"columns": columns})
        return day_one.cfg.model_copy(update={"contracts": [contract if c.entity == "order_lines" else c
                                                            for c in day_one.cfg.contracts]})

    bronze.ingest(named(0.0), "erp", DAY, "test")
    batch = pl.read_parquet(storage.data_file(day_one.cfg.lake, "bronze", "erp__order_lines",
                                              {"ingest_date": DAY.isoformat()}))
    bad = batch.filter(pl.col("quantity").cast(pl.Int64) < 1)  # independent count (the simulator has its own)
    assert line in bad["order_line_id"].to_list()
    with pytest.raises(QualityGateError, match=rf"rule 'positive_quantity' \(quantity\) rejected {bad.height}/"
                                               rf"{batch.height} rows .*above its max_reject_rate=0\.0%, e\.g\. \[.*'-3'"):
        silver.stage(named(0.0), "order_lines", DAY, "test")
    assert not storage.exists(day_one.cfg.lake, "silver", "stg_order_lines", {"ingest_date": DAY.isoformat()})

    def checks() -> dict:
        quality.publish_held(day_one.cfg, DAY)  # as the run does (build_gold, or write_report when blocked)
        return {r["check"]: (r["status"], r["failing_count"]) for r in storage.scan(
            day_one.cfg.lake, "gold", "quality_checks").filter(
            pl.col("dataset") == "silver.order_lines", pl.col("business_date") == DAY,
            pl.col("column") == "quantity", pl.col("tier") == 2).collect().to_dicts()}

    assert checks() == {"positive_quantity": ("blocked", bad.height), "quantity_is_a_number": ("pass", 0),
                        "not_nullable": ("pass", 0)}
    silver.stage(named(None), "order_lines", DAY, "test")  # no limit: quarantined under its name
    q = storage.scan(day_one.cfg.lake, "silver", "quarantine").filter(
        pl.col("entity") == "order_lines", pl.col("ingest_date").cast(pl.String) == DAY.isoformat()).collect()
    assert sorted(q.select("rule", "column", "offending_value").rows()) == sorted(
        ("positive_quantity", "quantity", str(v)) for v in bad["quantity"].to_list())
    assert checks()["positive_quantity"] == ("quarantined", bad.height)


def test_a_rule_whose_reject_rate_jumps_pages_once_under_the_gate_and_settles(day_one, monkeypatch, tmp_path):
    """Tier 3 on rejects: a named rule that rejected nothing for ten days and now rejects a few
    percent of the batch (under the 5% gate, so nothing blocks) pages Slack once with the rule,
    its count and rate (counted here from bronze), not again on a rerun, and settles when the
    rule is back to its usual rate."""
    import sqlalchemy as sa

    from lakehouse.config import CheckOptions
    from tests.fakes.slack import FakeSlack

    lines = day_one.cfg.contract("order_lines")
    columns = [c.model_copy(update={"checks": {"ge": CheckOptions(name="positive_quantity")}})
               if c.name == "quantity" else c for c in lines.columns]
    cfg = day_one.cfg.model_copy(update={
        "contracts": [lines.model_copy(update={"columns": columns}) if c.entity == "order_lines" else c
                      for c in day_one.cfg.contracts],
        "quality": day_one.cfg.quality.model_copy(update={"reject_min_rows": 1})})
    dataset = "silver.order_lines"
    for back in range(2, 12):  # ten quiet days before DAY (START's own day is real and quiet too)
        quality.record(cfg, dataset, DAY - timedelta(days=back), quality._frame([
            {"check": "positive_quantity", "column": "quantity", "tier": 2, "status": "pass",
             "failing_count": 0, "rows_checked": 1000}]), "baseline")

    engine = sa.create_engine(cfg.source("erp").url)
    with engine.begin() as conn:
        # the rule's quiet past holds in the source too: no naturally bad line in today's window
        conn.execute(sa.text("UPDATE order_lines SET quantity = 1 WHERE quantity < 1"))
        picked = conn.execute(sa.text("SELECT order_line_id, quantity FROM order_lines GROUP BY order_line_id "
                                      "HAVING count(*) = 1 ORDER BY max(updated_at) DESC LIMIT 3")).all()
        conn.execute(sa.text("UPDATE order_lines SET quantity = -3 WHERE order_line_id IN :ids")
                     .bindparams(sa.bindparam("ids", expanding=True)), {"ids": [p[0] for p in picked]})

    def stage(force: bool = False) -> pl.DataFrame:
        bronze.ingest(cfg, "erp", DAY, "test", force=force)
        batch = pl.read_parquet(storage.data_file(cfg.lake, "bronze", "erp__order_lines",
                                                  {"ingest_date": DAY.isoformat()}))
        silver.stage(cfg, "order_lines", DAY, "test")
        quality.publish_held(cfg, DAY)
        return batch

    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        batch = stage()
        bad = batch.filter(pl.col("quantity").cast(pl.Int64) < 1).height  # independent of the pipeline's count
        assert bad >= 3 and bad / batch.height < lines.max_quarantine_rate
        pages = [t for t in fake.texts() if "positive_quantity" in t]
        assert len(pages) == 1, fake.texts()
        assert f"rejected {bad:,} of {batch.height:,} rows on {DAY} ({bad / batch.height:.2%})" in pages[0]
        assert "0.00% on average over 10 earlier days" in pages[0] and "'-3'" in pages[0]
        flagged = storage.scan(cfg.lake, "gold", "quality_checks").filter(
            pl.col("business_date") == DAY, pl.col("check") == "positive_quantity:reject_jump").collect()
        assert flagged.select("status", "failing_count", "tier").rows() == [("flagged", bad, 3)]

        stage()  # a rerun of the same day: the incident is open, no second page
        assert len([t for t in fake.texts() if "positive_quantity" in t]) == 1

        with engine.begin() as conn:
            for line_id, quantity in picked:
                conn.execute(sa.text("UPDATE order_lines SET quantity = :q WHERE order_line_id = :i"),
                             {"q": quantity, "i": line_id})
        stage(force=True)  # the source fixed, the day re-extracted (``lakehouse run --force-extract``)
        recovered = [t for t in fake.texts() if "positive_quantity" in t][1:]
        assert len(recovered) == 1 and "back to its usual reject rate" in recovered[0], fake.texts()
    engine.dispose()


def test_a_file_that_arrives_after_the_window_is_named_and_left_for_the_next_day(day_one):
    """The run of DAY takes files that arrived before DAY's end; one stamped later is named in
    the outcome (and the CLI summary), not silently skipped, and the next day's run takes it."""
    from lakehouse import steps
    from lakehouse.cli import run_summary_text

    source = _landed(day_one, "csv")
    late = source.with_name(source.name.replace(".csv", "_late.csv"))
    late.write_bytes(source.read_bytes())
    _, end = bronze.day_bounds_utc(DAY, day_one.cfg.timezone)
    stamp = end.replace(tzinfo=UTC).timestamp() + 600  # ten minutes after the window closed
    os.utime(late, (stamp, stamp))
    counts = bronze.ingest(day_one.cfg, "inventory_drop", DAY, "test")
    arrived = datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None).isoformat()
    assert counts["left_for_later"] == [f"{late.name} (arrived {arrived} UTC)"]
    files = storage.scan(day_one.cfg.lake, "bronze", TABLE).filter(
        pl.col("ingest_date").cast(pl.String) == DAY.isoformat()).select(
        pl.col("_source_pointer").str.extract(r"^(.*)#row=")).collect().to_series()
    assert late.name not in set(files)
    summary = run_summary_text("retail", DAY, {"extract_inventory_drop": steps.Outcome(
        "extract_inventory_drop", "success", 0.1, result=counts)})
    assert f"1 file(s) arrived after the day's window, left for a later day's run: {late.name}" in summary

    nxt = bronze.ingest(day_one.cfg, "inventory_drop", DAY + timedelta(days=1), "test")
    assert "left_for_later" not in nxt
    taken = storage.scan(day_one.cfg.lake, "bronze", TABLE).filter(
        pl.col("_source_pointer").str.starts_with(f"{late.name}#")).collect()
    assert taken.height == len(source.read_text().splitlines()) - 1
    assert set(taken["ingest_date"].cast(pl.String)) == {(DAY + timedelta(days=1)).isoformat()}


def test_a_source_that_brings_too_few_new_rows_warns_once_and_recovers(day_one, monkeypatch, tmp_path):
    """``min_new_rows``: the run goes on, but the outcome, the CLI summary and Slack say that the
    source brought fewer rows changed on the business date than expected (counted here from
    bronze's own ``updated_at``); a rerun does not page again; enough rows settle it."""
    from lakehouse import steps
    from lakehouse.cli import run_summary_text
    from tests.fakes.slack import FakeSlack

    def expecting(n: int):
        return day_one.cfg.model_copy(update={"sources": [
            s.model_copy(update={"min_new_rows": n}) if s.name == "erp" else s for s in day_one.cfg.sources]})

    start, _ = bronze.day_bounds_utc(DAY, day_one.cfg.timezone)
    monkeypatch.setenv("LAKEHOUSE_ALERT_STATE", str(tmp_path / "alerts"))
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        counts = bronze.ingest(expecting(10**9), "erp", DAY, "test")
        changed = sum(storage.scan(day_one.cfg.lake, "bronze", f"erp__{e.entity}").filter(
            pl.col("ingest_date").cast(pl.String) == DAY.isoformat(), pl.col("updated_at") >= start)
            .select(pl.len()).collect().item() for e in day_one.cfg.source("erp").entities)
        assert 0 < changed == counts["new_rows"]
        assert counts["below_expected_rows"] == f"{changed:,} new rows on {DAY}, expected at least 1,000,000,000 " \
                                                "(min_new_rows)"
        bronze.ingest(expecting(10**9), "erp", DAY, "test", force=True)  # a rerun: the incident is open
        pages = [t for t in fake.texts() if "*erp* brought" in t]
        assert len(pages) == 1 and f"brought {changed:,} new rows on {DAY}" in pages[0]
        summary = run_summary_text("retail", DAY, {"extract_erp": steps.Outcome(
            "extract_erp", "success", 0.1, result=counts)})
        assert f"WARNING extract_erp: {counts['below_expected_rows']}" in summary

        ok = bronze.ingest(expecting(changed), "erp", DAY, "test", force=True)
        assert "below_expected_rows" not in ok and ok["new_rows"] == changed
        assert any("*erp* brings new rows again" in t for t in fake.texts())


def test_a_set_aside_file_fixed_in_place_is_taken_after_a_retry(day_one):
    """``lakehouse quarantine retry-file``: the same name, fixed in place (same arrival), is
    skipped by later runs until retried; after the retry the next run takes it whole."""
    path = _landed(day_one, "csv")
    original = path.read_bytes()
    _rewrite(path, b"")
    assert bronze.ingest(day_one.cfg, "inventory_drop", DAY, "test")["set_aside"][0].startswith(path.name)
    nxt = DAY + timedelta(days=1)  # the same bytes the next day: skipped, not set aside again
    bronze.ingest(day_one.cfg, "inventory_drop", nxt, "test")
    assert [f["state"] for f in bronze.set_aside_files(day_one.cfg)] == ["set aside"]  # skipped, not re-alerted

    with pytest.raises(ValueError, match="is not a set-aside file of inventory_drop"):
        bronze.retry_file(day_one.cfg, "inventory_drop", "no_such.csv")
    entry = bronze.retry_file(day_one.cfg, "inventory_drop", path.name)
    assert entry["set_aside"] and entry["ingest_date"] == DAY.isoformat()
    assert [f["state"] for f in bronze.set_aside_files(day_one.cfg)] == ["waiting for a retry"]
    _rewrite(path, original)  # fixed in place (a re-drop of new content needs no retry at all)
    bronze.ingest(day_one.cfg, "inventory_drop", nxt, "test", force=True)
    taken = storage.scan(day_one.cfg.lake, "bronze", TABLE).filter(
        pl.col("_source_pointer").str.starts_with(f"{path.name}#")).collect()
    assert set(taken["ingest_date"].cast(pl.String)) == {nxt.isoformat()}
    assert taken.height == len(original.decode().splitlines()) - 1
    assert [f["state"] for f in bronze.set_aside_files(day_one.cfg)] == ["taken again"]
