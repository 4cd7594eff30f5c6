"""Gold: star-schema machinery (surrogate keys, point-in-time lookups, calendar) and the runner.

A gold table is defined in ``gold.yaml`` in one of three ways:

- ``sql``: a Polars SQL SELECT (dbt-model style); each table name it mentions is the gold
  table built earlier in this run or else the silver table of that name;
- ``date_dimension``: a calendar over the dates of one column;
- ``builder``: a pure Python function in ``pipelines/<domain>/gold.py`` whose keyword
  parameters name its inputs the same way (``dim_product``, ``order_lines``), plus
  ``run_date``, the business date. For what SQL can't say (as-of joins, inferred members).

The runner resolves the inputs to LazyFrames, builds lazily and publishes atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from time import perf_counter

import holidays as holidays_lib
import polars as pl

from lakehouse import storage
from lakehouse.config import DateDimension, DomainConfig, GoldTable

log = logging.getLogger(__name__)
UNKNOWN_SK = -1


def _md5_int64(values: pl.Series) -> pl.Series:
    # hashed once per distinct value: a fact batch names each member many times (a day of
    # order lines hashed ~490k product and customer keys, 2.4 s of a 365-day daily run)
    if values.is_empty():
        return pl.Series(values.name, [], dtype=pl.Int64)
    distinct = values.unique()
    hashed = pl.Series([int.from_bytes(hashlib.md5(v.encode()).digest()[:8], "big", signed=True) & (2**62 - 1)
                        for v in distinct], dtype=pl.Int64)
    return values.replace_strict(distinct, hashed, return_dtype=pl.Int64)


def surrogate_key(*columns: str) -> pl.Expr:
    """A stable Int64 key from natural-key columns (MD5-based, the same in every run and version)."""
    joined = pl.concat_str([pl.col(c).cast(pl.String).fill_null("<null>") for c in columns], separator="|")
    return joined.map_batches(_md5_int64, return_dtype=pl.Int64)


def version_key(key: str) -> pl.Expr:
    """Surrogate key of an SCD2 version (needs ``version`` and ``valid_from``).

    A member's first version is keyed on the natural key alone, later versions on
    (natural key, ``valid_from``). An inferred member (see ``with_inferred_members``)
    gets the same key as the first version, so when the real record arrives the
    placeholder is completed in place and facts already pointing at it stay valid.
    """
    return (pl.when(pl.col("version") == 1).then(surrogate_key(key))
            .otherwise(surrogate_key(key, "valid_from")))


def with_inferred_members(dim: pl.LazyFrame, references: list[pl.LazyFrame], *, key: str,
                          sk: str) -> pl.LazyFrame:
    """Add a placeholder row for every ``key`` that facts reference but the dimension lacks.

    Placeholders (``is_inferred = true``) have null attributes and the member key of
    ``version_key``; they disappear, with their key taken over by the real first
    version, as soon as the member's record arrives (late-arriving dimension member).
    """
    known = dim.select(key).unique()
    missing = (pl.concat([r.select(pl.col(key)) for r in references]).drop_nulls().unique()
               .join(known, on=key, how="anti"))
    placeholders = missing.select(surrogate_key(key).alias(sk), key).with_columns(
        version=pl.lit(1, pl.Int32), is_current=pl.lit(True), is_inferred=pl.lit(True))
    return pl.concat([dim.with_columns(is_inferred=pl.lit(False)), placeholders],
                     how="diagonal_relaxed").sort(key, "version")


def point_in_time(facts: pl.LazyFrame, dim: pl.LazyFrame, *, key: str, at: str, sk: str) -> pl.LazyFrame:
    """Attach the surrogate key of the dimension version valid at each fact's ``at``.

    A fact older than the member's first known version, or whose member is only
    inferred so far, takes the member key (``version_key`` of the first version):
    the member existed, we just learnt of it late. A null natural key gets ``-1``.
    """
    versions = (dim.filter(pl.col("valid_from").is_not_null())
                .select(key, pl.col("valid_from").alias("_valid_from"), sk).sort("_valid_from"))
    member = pl.when(pl.col(key).is_not_null()).then(surrogate_key(key))
    return (
        facts.sort(at)
        .join_asof(versions, left_on=at, right_on="_valid_from", by=key, strategy="backward",
                   check_sortedness=False)
        .with_columns(pl.coalesce(sk, member, pl.lit(UNKNOWN_SK, pl.Int64)).alias(sk))
        .drop("_valid_from")
    )


def date_dimension(bounds: pl.LazyFrame, *, country: str) -> pl.LazyFrame:
    """Calendar rows between ``bounds``' ``lo`` and ``hi`` dates, with public holidays."""
    days = bounds.select(pl.date_ranges("lo", "hi").alias("date")).explode("date")
    years = range(1970, 2100)
    hol = holidays_lib.country_holidays(country, years=years)
    hol_frame = pl.LazyFrame({"date": list(hol.keys()), "holiday_name": list(hol.values())},
                             schema={"date": pl.Date, "holiday_name": pl.String})
    return days.join(hol_frame, on="date", how="left").select(
        pl.col("date").dt.strftime("%Y%m%d").cast(pl.Int32).alias("date_sk"),
        "date",
        pl.col("date").dt.year().alias("year"),
        pl.col("date").dt.quarter().alias("quarter"),
        pl.col("date").dt.month().alias("month"),
        pl.col("date").dt.week().alias("iso_week"),
        pl.col("date").dt.weekday().alias("day_of_week"),
        pl.col("date").dt.strftime("%A").alias("day_name"),
        (pl.col("date").dt.weekday() >= 6).alias("is_weekend"),
        pl.col("holiday_name").is_not_null().alias("is_holiday"),
        "holiday_name",
    ).sort("date")


def load_builder(path: str) -> Callable[..., pl.LazyFrame]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_inputs(cfg: DomainConfig, builder: Callable[..., pl.LazyFrame], run_date: date) -> dict:
    """Map a builder's parameter names to inputs.

    ``run_date`` is the business date; ``partitions`` is left to the caller (``build_table``
    passes it for an incremental build); a name in gold.yaml is that gold table; a gold
    table produced outside gold.yaml (ML outputs) is scanned if published, else
    ``None``; anything else is the silver table of that name.
    """
    return {name: run_date if name == "run_date" else _input(cfg, name)
            for name in inspect.signature(builder).parameters if name != "partitions"}


def _input(cfg: DomainConfig, name: str) -> pl.LazyFrame | None:
    """A gold table of gold.yaml, a gold table produced elsewhere (ML) if published, else silver."""
    if name in {g.name for g in cfg.gold}:
        return storage.scan(cfg.lake, "gold", name)
    if storage.path_exists(storage.table_dir(cfg.lake, "gold", name)):
        return storage.scan(cfg.lake, "gold", name, missing_ok=True)
    if name.startswith(("fct_", "dim_", "agg_")):
        return None
    return storage.scan(cfg.lake, "silver", name)


def sql_inputs(cfg: DomainConfig, sql: str) -> list[str]:
    """The silver and gold tables a SQL model reads: the tables its parsed FROM and JOIN
    clauses name (sqlglot), less its own CTEs, that are known tables. A column alias or a
    string equal to a table's name reads nothing (a text match once read it)."""
    named = set(sql_table_names(sql))
    known = [g.name for g in cfg.gold] + [c.entity for c in cfg.contracts]
    return [n for n in known if n in named]


def sql_table_names(sql: str) -> list[str]:
    """The tables a SELECT's FROM and JOIN clauses name (parsed by sqlglot), less its own CTEs."""
    import sqlglot
    from sqlglot import expressions as exp

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"gold SQL model does not parse: {exc}") from exc
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return sorted({t.name for t in tree.find_all(exp.Table)} - ctes)


def from_sql(cfg: DomainConfig, sql: str) -> pl.LazyFrame | None:
    """Run a SQL model lazily with Polars' SQL engine; ``None`` while an input is missing."""
    frames = {name: _input(cfg, name) for name in sql_inputs(cfg, sql)}
    if any(f is None for f in frames.values()):
        return None
    return pl.SQLContext(frames).execute(sql)


def from_date_dimension(cfg: DomainConfig, spec: DateDimension) -> pl.LazyFrame | None:
    """Calendar from the first to the last date of ``spec.column``, extended by ``spec.extend``."""
    source = _input(cfg, spec.table)
    if source is None:
        return None
    day = pl.col(spec.column).cast(pl.Date)
    bounds = source.select(day.min().alias("lo"), day.max().dt.offset_by(spec.extend).alias("hi"))
    return date_dimension(bounds, country=spec.country)


def define(cfg: DomainConfig, table: GoldTable, run_date: date) -> pl.LazyFrame | None:
    """The LazyFrame of one gold table as configured (``None``: an input does not exist yet)."""
    if table.sql is not None:
        try:
            return from_sql(cfg, table.sql)
        except ValueError as exc:
            raise ValueError(f"gold.{table.name} (gold.yaml): {exc}") from exc
    if table.date_dimension is not None:
        return from_date_dimension(cfg, table.date_dimension)
    builder = load_builder(table.builder or "")
    return builder(**resolve_inputs(cfg, builder, run_date))


def build_table(cfg: DomainConfig, table: GoldTable, run_date: date, *, full: bool = False) -> int:
    """Build and publish one gold table (one commit, or one per chunk below); returns its row count.

    A table with ``partition_by`` commits only the partitions whose content changed: late
    data touching old dates rewrites those dates and nothing else, and a rerun rewrites
    nothing. With ``touched`` it also *computes* only the partitions its inputs' changes
    touch since the input versions its last build consumed (``touched_partitions``);
    otherwise, or with ``full``, it is recomputed whole (lazily, streamed). An incremental
    build touching more than ``FULL_BUILD_ROWS`` rows of partitions commits them a chunk at a
    time (``touched_in_chunks``, ADR 0033): each commit whole partitions, and the inputs'
    versions recorded only after the last, so a crash between them recomputes the lot.
    """
    consumed = _input_versions(cfg, table)  # read before the inputs: a later commit is seen again
    if not full and _inputs_unchanged(cfg, table, consumed):
        log.info("gold.%s: no input changed since its last build", table.name)
        return storage.row_count(cfg.lake, "gold", table.name)
    partitions = None if full else touched_partitions(cfg, table, run_date, consumed)
    if partitions is not None and not partitions:
        log.info("gold.%s: no input changed since its last build", table.name)
        _record_consumed(cfg, table, consumed)
        return storage.row_count(cfg.lake, "gold", table.name)
    chunks = every_partition_in_chunks(cfg, table, run_date) if partitions is None else None
    # what is committed: (the frame or frames of one commit, the partitions it replaces or None: all)
    commits: list[tuple[pl.LazyFrame | list[pl.LazyFrame] | None, list | None]]
    if chunks is not None:  # a full build, computed a chunk of partitions at a time, one commit
        builder = load_builder(table.builder or "")
        inputs = resolve_inputs(cfg, builder, run_date)
        commits = [([builder(**inputs, partitions=chunk).filter(pl.col(table.partition_by).is_in(chunk))
                     for chunk in chunks], None)]
    elif partitions is None:
        commits = [(define(cfg, table, run_date), None)]
    elif table.sql is not None:
        frame = define(cfg, table, run_date)
        commits = [(None if frame is None else frame.filter(pl.col(table.partition_by).is_in(partitions)),
                    partitions)]
    else:  # an incremental build: a chunk of the touched partitions computed and committed at a time
        builder = load_builder(table.builder or "")
        inputs = resolve_inputs(cfg, builder, run_date)
        commits = [(builder(**inputs, partitions=chunk), chunk)
                   for chunk in touched_in_chunks(cfg, table, partitions)]
    if commits[0][0] is None:
        log.info("gold.%s: no input yet, skipped", table.name)
        return 0
    if table.partition_by:
        for frame, only in commits:
            counts = storage.publish_partitioned(frame, cfg.lake, "gold", table.name, table.partition_by,
                                                 sort_by=table.sort_by, only=only)
            log.info("gold.%s partitions (%s): %s", table.name,
                     "all" if only is None else f"{len(only)} touched", counts)
    else:
        frame = commits[0][0]
        wrote = storage.publish_table(frame.sort(table.sort_by) if table.sort_by else frame, cfg.lake, "gold",
                                      table.name, rewrite_unchanged=full)
        if not wrote:
            log.info("gold.%s: unchanged, no new version", table.name)
    _record_consumed(cfg, table, consumed)  # data first: a crash before this recomputes, never skips
    rows = storage.row_count(cfg.lake, "gold", table.name)
    log.info("gold.%s: %d rows", table.name, rows)
    return rows


# -- large builds of partitioned tables, a chunk of partitions at a time -----------------------

# Rows computed together: a fact's builder sorts and as-of-joins what it computes, so a year of
# retail order lines computed at once held 3.9 GB (13 M lines at 2,000 x 12), and two years at
# seed scale are ten times that. In a full build, rows of the largest input; in an incremental
# one, rows of the table. 4 M until ADR 0033; at 2 M a seed-scale month's fact chunks computed in
# 1.6 GB (the 4.4-5.2 GB build_gold peaks of month-runs were the change feeds' reads, not chunks)
FULL_BUILD_ROWS = 2_000_000


def touched_in_chunks(cfg: DomainConfig, table: GoldTable, partitions: list) -> list[list]:
    """An incremental build's ``partitions`` (sorted) in chunks of about ``FULL_BUILD_ROWS`` rows of
    the table, each computed and committed on its own; one chunk when they hold fewer.

    A daily run touches a few dates and is one chunk. A batch of a month or more (a long history
    loaded a month per run, a backfill's catch-up) touches as many dates: computed at once, a
    fact's sort and as-of joins hold them all, and delta-rs buffers every partition of one
    commit until it ends (ADR 0017). The rows a partition holds are the table's average, from
    Delta's log (no data file read).
    """
    from lakehouse import delta

    where = storage.table_dir(cfg.lake, "gold", table.name)
    stored = len(delta.partitions(where)) if delta.is_table(where) else 0
    rows_each = delta.row_count(where) / stored if stored else 0
    size = max(1, int(FULL_BUILD_ROWS // rows_each)) if rows_each else len(partitions)
    return [partitions[i:i + size] for i in range(0, len(partitions), size)] or [partitions]


def every_partition_in_chunks(cfg: DomainConfig, table: GoldTable, run_date: date) -> list[list] | None:
    """The partitions a full build of ``table`` writes, in chunks of about ``FULL_BUILD_ROWS``
    rows of its largest input, or None: compute it whole (no ``touched`` function, a small
    table, an input missing, or a null partition, which no row's own values place).

    They come from the table's ``touched`` function told that every row of every input is new
    and the table is empty: what a full build computes is then what an incremental build
    would, whose equality with the whole build the incremental tests prove. Each chunk is
    computed by the builder with ``partitions`` (as an incremental build is).
    """
    from lakehouse.delta import CHANGE

    if not table.touched or not table.partition_by or not table.builder:
        return None
    touched = load_builder(table.touched)

    def current(name: str) -> pl.LazyFrame | None:
        if name != table.name:
            return _input(cfg, name)
        frame = define(cfg, table, run_date)  # the table itself: empty, the build replaces all of it
        return None if frame is None else pl.LazyFrame(schema=frame.collect_schema())

    def everything(name: str) -> pl.LazyFrame | None:
        frame = current(name)
        return None if frame is None else frame.with_columns(pl.lit(1, pl.Int64).alias(CHANGE))

    kwargs = _touched_arguments(touched, run_date, changed=everything, current=current)
    if kwargs is None:
        return None
    rows = max((frame.select(pl.len()).collect().item() for name, frame in kwargs.items()
               if name.startswith("changed_") and isinstance(frame, pl.LazyFrame)), default=0)
    if rows <= FULL_BUILD_ROWS:  # computed at once, without asking for its partitions
        return None
    by = table.partition_by
    values = touched(**kwargs).select(pl.col(by).unique()).collect()[by].to_list()
    size = max(1, FULL_BUILD_ROWS * len(values) // max(rows, 1))  # partitions a chunk
    if None in values or len(values) <= size:
        return None
    values.sort()
    return [values[i:i + size] for i in range(0, len(values), size)]


# -- incremental builds: which partitions the inputs' changes touch ---------------------------

CONSUMED = "gold_consumed"


def _functions(table: GoldTable) -> list[Callable]:
    return [load_builder(path) for path in (table.builder, table.touched) if path]


def _input_names(cfg: DomainConfig, table: GoldTable) -> list[str]:
    """Every table the definition reads: the SQL's tables, the calendar's, or what the builder
    and its ``touched`` function take (with ``run_date`` if they take the date)."""
    if table.sql is not None:
        return sorted(sql_inputs(cfg, table.sql))
    if table.date_dimension is not None:
        return [table.date_dimension.table]
    names = {p.removeprefix("changed_") for f in _functions(table) for p in inspect.signature(f).parameters}
    return sorted(names - {"partitions"})


def _location(cfg: DomainConfig, name: str) -> storage.Location | None:
    """Where the input ``name`` resolves (as ``_input`` reads it); None for an ML table not yet published."""
    gold_dir = storage.table_dir(cfg.lake, "gold", name)
    if name in {g.name for g in cfg.gold} or storage.path_exists(gold_dir):
        return gold_dir
    if name.startswith(("fct_", "dim_", "agg_")):
        return None
    return storage.table_dir(cfg.lake, "silver", name)


def _fingerprint(table: GoldTable) -> str:
    """Changes with the table's definition (its YAML and its functions' code): a new definition
    is computed in full, never spliced into partitions the old one computed."""
    # the words about a table (its description, column comments) and how it is served are not
    # its definition: editing them recomputes nothing
    text = "\n".join([table.model_dump_json(exclude={"description", "columns", "serve"}),
                      *(inspect.getsource(f) for f in _functions(table))])
    return hashlib.sha256(text.encode()).hexdigest()


def _input_versions(cfg: DomainConfig, table: GoldTable) -> dict[str, int | None]:
    """The newest Delta version of each input (None: not a Delta table yet, or the business
    date, which is no version: a table reading it is never "unchanged")."""
    from lakehouse import delta

    versions: dict[str, int | None] = {}
    for name in _input_names(cfg, table):
        where = None if name == "run_date" else _location(cfg, name)
        versions[name] = delta.version(where) if where is not None and delta.is_table(where) else None
    return versions


def _inputs_unchanged(cfg: DomainConfig, table: GoldTable, versions: dict[str, int | None]) -> bool:
    """Whether this definition was last built from exactly these input versions (so its content
    cannot differ): then the build is skipped, for any kind of table."""
    from lakehouse import delta

    if not versions or None in versions.values():
        return False
    state = storage.read_json(_consumed_path(cfg, table), {})
    return (state.get("definition") == _fingerprint(table) and state.get("versions") == versions
            and delta.is_table(storage.table_dir(cfg.lake, "gold", table.name)))


def _consumed_path(cfg: DomainConfig, table: GoldTable) -> storage.Location:
    return storage.state_path(cfg.lake, CONSUMED, f"{table.name}.json")


def _record_consumed(cfg: DomainConfig, table: GoldTable, versions: dict[str, int | None]) -> None:
    storage.write_json(_consumed_path(cfg, table), {"definition": _fingerprint(table), "versions": versions})


def forget_consumed(cfg: DomainConfig) -> None:
    """Make every table's next build a full one (``lakehouse rebuild``)."""
    for table in cfg.gold:
        storage.write_json(_consumed_path(cfg, table), {})


def touched_partitions(cfg: DomainConfig, table: GoldTable, run_date: date,
                       versions: dict[str, int | None] | None = None) -> list | None:
    """The partitions of ``table`` that its inputs' changes touch, or None: compute it in full.

    The ``touched`` function gets, for each parameter ``changed_<input>``, the rows of that
    input that changed since the version the table's last build consumed (every image,
    from Delta's change feed), and the inputs themselves by name; it returns the partition
    values those changes reach. In full when there is no earlier build of this definition,
    a change feed is unavailable (``delta.changes_since``), or a null partition is involved
    (a row lands there for lack of a match, which no change of the row itself shows).
    ``versions``: the inputs' newest versions (``_input_versions``); when they are all the
    versions consumed, nothing is touched and no change feed is opened (most tables, most runs).
    """
    from lakehouse import delta

    if table.touched_sql:
        return _touched_by_sql(cfg, table)
    if not table.touched or not table.partition_by:
        return None
    touched = load_builder(table.touched)
    wanted = {f"changed_{n}" for n in inspect.signature(load_builder(table.builder or "")).parameters
              if n not in ("run_date", "partitions")}
    missing = sorted(wanted - set(inspect.signature(touched).parameters))
    if missing:
        raise ValueError(f"gold.{table.name}: {table.touched} must take {', '.join(missing)} "
                         "(a change in any input of the builder can touch a partition)")
    state = _consumed_state(cfg, table)
    if state is None:
        return None
    if (versions is not None and None not in versions.values() and versions == state.get("versions")
            and "run_date" not in inspect.signature(touched).parameters):
        return []
    def located(name: str) -> storage.Location | None:
        where = _location(cfg, name)
        return where if where is not None and delta.is_table(where) else None

    try:
        kwargs = _touched_arguments(
            touched, run_date,
            changed=lambda name: None if (w := located(name)) is None else delta.changes_since(
                w, state["versions"].get(name)),
            current=lambda name: None if located(name) is None else _input(cfg, name))
        return None if kwargs is None else _placed(cfg, table, touched(**kwargs))
    finally:
        delta.release_change_feeds()  # the feeds' spilled files: computed into the partitions


def _touched_arguments(touched: Callable[..., pl.LazyFrame], run_date: date, *,
                       changed: Callable[[str], pl.LazyFrame | None],
                       current: Callable[[str], pl.LazyFrame | None]) -> dict[str, object] | None:
    """A ``touched`` function's arguments: ``changed_<input>`` from ``changed(input)``, an input
    by name from ``current(name)``, the business date; None when one of them is unavailable."""
    kwargs: dict[str, object] = {}
    for name in inspect.signature(touched).parameters:
        if name == "run_date":
            value: object = run_date
        elif name.startswith("changed_"):
            value = changed(name.removeprefix("changed_"))
        else:
            value = current(name)
        if value is None:
            return None
        kwargs[name] = value
    return kwargs


def _touched_by_sql(cfg: DomainConfig, table: GoldTable) -> list | None:
    """``touched_partitions`` of a SQL model: its ``touched_sql`` run over ``changed_<input>`` (each
    input's changed rows, every image, from the change feed) and the inputs themselves."""
    from lakehouse import delta

    inputs = sql_inputs(cfg, table.sql or "")
    named = set(sql_table_names(table.touched_sql or ""))
    missing = sorted(f"changed_{n}" for n in inputs if f"changed_{n}" not in named)
    if missing:
        raise ValueError(f"gold.{table.name}: touched_sql must read {', '.join(missing)} (a change in any "
                         "input of the model can touch a partition)")
    state = _consumed_state(cfg, table)
    if state is None:
        return None
    frames: dict[str, pl.LazyFrame] = {}
    try:
        for name in inputs:
            where = _location(cfg, name)
            if where is None or not delta.is_table(where):
                return None
            changed = delta.changes_since(where, state.get("versions", {}).get(name))
            if changed is None:
                return None
            frames[f"changed_{name}"] = changed.drop(delta.CHANGE)
            frames[name] = _input(cfg, name)
        return _placed(cfg, table, pl.SQLContext(frames).execute(table.touched_sql or ""))
    finally:
        delta.release_change_feeds()


def _consumed_state(cfg: DomainConfig, table: GoldTable) -> dict | None:
    """What the table's last build of this definition consumed; None: build it in full (another
    definition built it, or it is not a Delta table yet)."""
    from lakehouse import delta

    state = storage.read_json(_consumed_path(cfg, table), {})
    target = storage.table_dir(cfg.lake, "gold", table.name)
    return state if state.get("definition") == _fingerprint(table) and delta.is_table(target) else None


def _placed(cfg: DomainConfig, table: GoldTable, touched: pl.LazyFrame) -> list | None:
    """The sorted partition values ``touched`` names, or None (in full) where a null partition is
    involved: a row lands there for lack of a match, which no change of the row itself shows."""
    from lakehouse import delta

    by = table.partition_by
    values = touched.select(pl.col(by).unique()).collect()[by].to_list()
    stored = delta.scan(storage.table_dir(cfg.lake, "gold", table.name))
    if None in values or stored.filter(pl.col(by).is_null()).select(pl.len()).collect().item():
        return None
    return sorted(values)


def build_all(cfg: DomainConfig, run_date: date, *, full: bool = False) -> dict[str, int]:
    """Build every gold table in configured order (dimensions before facts).

    Gold is a function of silver alone, so concurrent runs only need to take turns: the
    last build starts after every silver table it could see was published.
    """
    from lakehouse import memory

    built: dict[str, int] = {}
    with storage.locked(cfg.lake, "gold"):
        for table in cfg.gold:
            with memory.measured() as peak:  # which table a large run's memory goes to
                start = perf_counter()
                built[table.name] = build_table(cfg, table, run_date, full=full)
                log.info("gold.%s built in %.1f s, peak RSS %s MB", table.name, perf_counter() - start, peak())
    return built


# -- helpers for builders and ``touched`` functions ---------------------------------------------

def date_runs(dates: Sequence[date]) -> list[tuple[date, date]]:
    """Sorted distinct ``dates`` as runs of consecutive days, (first, last) each."""
    runs: list[tuple[date, date]] = []
    for d in sorted(set(dates)):
        if runs and (d - runs[-1][1]).days == 1:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def on_dates(frame: pl.LazyFrame, column: str, dates: Sequence[date]) -> pl.LazyFrame:
    """The rows of ``frame`` whose ``column`` (a date or a datetime) falls on one of ``dates``.

    Said as ranges of the column's own type as well as exactly, so that Parquet statistics
    skip the files and row groups of other days: silver is laid out by key, which follows
    time in most sources, and a cast in the predicate would hide it from the statistics.
    """
    if not dates:
        return frame.clear()
    dtype = frame.collect_schema()[column]
    col = pl.col(column)
    if dtype == pl.Date:
        ranges = [col.is_between(lo, hi) for lo, hi in date_runs(dates)]
    else:
        ranges = [col.is_between(pl.lit(datetime.combine(lo, time())).cast(dtype),
                                 pl.lit(datetime.combine(hi + timedelta(days=1), time())).cast(dtype),
                                 closed="left")
                  for lo, hi in date_runs(dates)]
    return frame.filter(pl.any_horizontal(ranges)).filter(col.cast(pl.Date).is_in(sorted(set(dates))))


def in_ranges(column: str, ranges: pl.DataFrame) -> pl.Expr:
    """Rows whose ``column`` lies in one of ``ranges`` (columns ``lo`` and ``hi``, inclusive): an
    OR of a few ranges, which Parquet statistics can skip by where a join or ``is_in`` cannot."""
    if ranges.is_empty():
        return pl.lit(False)
    return pl.any_horizontal([pl.col(column).is_between(pl.lit(lo), pl.lit(hi))
                             for lo, hi in ranges.select("lo", "hi").rows()])


def key_ranges(values: pl.Series, max_ranges: int = 32) -> pl.DataFrame:
    """``values`` as at most ``max_ranges`` ranges (``lo``, ``hi``) of consecutive sorted values, for
    ``in_ranges``: one per value when few, else equal-count slices (a key scattered over the
    table then reads more files, never misses one)."""
    ordered = values.drop_nulls().unique().sort()
    size = max(1, -(-len(ordered) // max_ranges))
    return (pl.DataFrame({"v": ordered}).with_row_index().group_by(pl.col("index") // size)
            .agg(pl.col("v").min().alias("lo"), pl.col("v").max().alias("hi")).select("lo", "hi"))


def partitions_after_new_versions(changed_dim: pl.LazyFrame, facts: pl.LazyFrame, *, key: str, sk: str,
                                  partition: str) -> pl.LazyFrame:
    """The ``partition`` values of ``facts`` whose point-in-time lookup (``point_in_time``) a change
    of an SCD2 dimension's versions can move: for each member whose versions changed, its
    facts from the earliest changed ``valid_from`` on. Inferred members (no ``valid_from``)
    move nothing: a fact takes the member key with or without them.

    ``changed_dim`` is the dimension's change feed (``delta.changes_since``); ``facts`` the
    stored fact table, with ``key`` and ``partition``.
    """
    from lakehouse import delta

    starts = (delta.net(changed_dim, [key, "valid_from", sk]).filter(pl.col("valid_from").is_not_null())
              .group_by(key).agg(pl.col("valid_from").min().dt.date().alias("_since")).collect())
    if starts.is_empty():
        return facts.select(partition).clear()
    return (facts.filter(pl.col(partition) >= starts["_since"].min())
            .join(starts.lazy(), on=key).filter(pl.col(partition) >= pl.col("_since"))
            .select(partition).unique())


def partitions_with(facts: pl.LazyFrame, column: str, values: pl.Series, *, partition: str) -> pl.LazyFrame:
    """The ``partition`` values of ``facts`` having one of ``values`` in ``column`` (none read when
    ``values`` is empty)."""
    if values.is_empty():
        return facts.select(partition).clear()
    return facts.filter(pl.col(column).is_in(values.unique().to_list())).select(partition).unique()
