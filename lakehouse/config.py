"""Typed, validated configuration loaded from ``configs/<domain>/*.yaml``.

Every YAML file is parsed into pydantic models at load time. A validation error
names the file, the line and what was expected, so a typo never reaches a DAG run.
Secrets are never in YAML: values of the form ``${ENV_VAR:-default}`` are read
from the environment when the config is loaded.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENT = r"^[a-z_][a-z0-9_]*$"
Ident = Annotated[str, Field(pattern=IDENT)]


class ConfigError(ValueError):
    """A configuration file is malformed; the message names the file and line."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources
class DatabaseEntity(Model):
    """One table of a relational source, extracted incrementally by watermark."""

    entity: Ident
    table: Ident
    updated_at: Ident = "updated_at"
    full_extract: bool = Field(
        False, description="read the whole table every run (a snapshot), e.g. to detect hard deletes")


def _time_zone(name: str | None) -> str | None:
    """A valid IANA zone name (``Europe/Paris``), else a ValueError naming it."""
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'UTC' or 'America/New_York')") from None
    return name


class SourceModel(Model):
    """What every source kind has: how its text is read, and how a batch that does not match
    its contracts is treated."""

    min_new_rows: int = Field(
        0, ge=0, description="a daily run whose extract brings fewer new rows than this (rows changed on the "
                             "business date, or every row of a file drop) warns in the run summary and Slack; "
                             "0: no expectation")
    schema_drift: Literal["fail", "evolve", "rescue"] = Field(
        "fail", description="added or retyped columns: fail blocks the batch; evolve carries new columns "
                            "into silver; rescue keeps them in a _rescued JSON column (ADR 0011)")
    null_values: list[str] = Field(
        [], description="text that means a missing value in every column of this source, e.g. "
                        "['NA', ''] (compared after trimming blanks); a column's own null_values override it")
    timezone: str = Field(
        "UTC", description="zone of this source's timestamps that carry no offset (a value with 'Z' or an "
                           "offset is read as such); silver stores UTC")

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _time_zone(v)))


class DatabaseSource(SourceModel):
    kind: Literal["database"]
    name: Ident
    url: str = Field(description="SQLAlchemy URL; may reference ${ENV_VARS}")
    lookback_days: int = Field(2, ge=0, le=60)
    entities: list[DatabaseEntity]


class RestSource(SourceModel):
    kind: Literal["rest"]
    name: Ident
    base_url: str
    entity: Ident
    path: str
    page_size: int = Field(500, ge=1, le=10_000)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0)
    lookback_days: int = Field(2, ge=0, le=60)


class FileSource(SourceModel):
    kind: Literal["files"]
    name: Ident
    entity: Ident
    landing_dir: str
    patterns: list[str] = ["*.csv", "*.xlsx"]
    lookback_days: int = Field(2, ge=0, le=60)
    on_unreadable_file: Literal["set_aside", "fail"] = Field(
        "set_aside", description="set_aside: an unreadable file is kept aside with its reason, alerted once, "
                                 "and the other files go on; fail: it blocks the source's batch")


Source = Annotated[DatabaseSource | RestSource | FileSource, Field(discriminator="kind")]


# --------------------------------------------------------------------------- contracts
DType = Literal["int64", "float64", "string", "bool", "date", "datetime"]


CheckKind = Literal["parse", "not_nullable", "ge", "le", "isin", "pattern"]


class CheckOptions(Model):
    """One column check's name (in quarantine, quality history, status and alerts) and limit."""

    name: Ident | None = Field(None, description="default: pandera's text, e.g. str_matches('^[A-Z]{2}$')")
    max_reject_rate: float | None = Field(
        None, ge=0, le=1, description="share of a batch's rows this check may reject; above it the batch "
                                      "blocks, so one rule cannot quietly remove a whole category")


class ColumnContract(Model):
    name: Ident
    type: DType
    nullable: bool = True
    description: str = ""
    ge: float | None = None
    le: float | None = None
    isin: list[str] | None = None
    pattern: str | None = None
    source_column: str | None = Field(None, description="name in bronze when it differs")
    scd_type: Literal[1, 2] = Field(2, description="in scd2 entities: 2 opens a version, 1 overwrites")
    pii: bool = Field(False, description="tokenised with a keyed HMAC in silver (lakehouse/pii.py)")
    null_values: list[str] | None = Field(
        None, description="text meaning a missing value in this column; overrides the source's "
                          "(e.g. [] where 'NA' is data, Namibia's country code)")
    format: str | list[str] | None = Field(
        None, description="date or datetime columns: the strftime format(s) text is in, tried in order "
                          "(e.g. '%m/%d/%Y %H:%M'); default ISO 8601, with 'T' or a blank, optional "
                          "fraction, 'Z' or an offset, or a date alone")
    timezone: str | None = Field(None, description="datetime columns: zone of values without an offset; "
                                                   "overrides the source's")

    checks: dict[CheckKind, CheckOptions] = Field(
        {}, description="per check of this column (parse, not_nullable, ge, le, isin, pattern): "
                        "{name, max_reject_rate}")

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _time_zone(v)))

    @model_validator(mode="after")
    def _checks_exist(self) -> ColumnContract:
        present = {"parse": self.type != "string", "not_nullable": not self.nullable, "ge": self.ge is not None,
                   "le": self.le is not None, "isin": self.isin is not None, "pattern": self.pattern is not None}
        absent = sorted(k for k in self.checks if not present[k])
        if absent:
            raise ValueError(f"checks {absent} name checks this column does not have (it has "
                             f"{sorted(k for k, on in present.items() if on)})")
        return self

    @model_validator(mode="after")
    def _pii_is_text(self) -> ColumnContract:
        if self.pii and self.type != "string":
            raise ValueError("pii columns must be strings (their tokens are)")
        return self

    @model_validator(mode="after")
    def _format_is_temporal(self) -> ColumnContract:
        if self.format is not None and self.type not in ("date", "datetime"):
            raise ValueError(f"format applies to date and datetime columns, not {self.type}")
        if self.timezone is not None and self.type != "datetime":
            raise ValueError(f"timezone applies to datetime columns, not {self.type}")
        return self

    @property
    def formats(self) -> list[str] | None:
        return [self.format] if isinstance(self.format, str) else self.format

    @property
    def bronze_name(self) -> str:
        return self.source_column or self.name


class Deletes(Model):
    """How a source tells us a record was deleted; silver keeps it as a version with ``is_deleted``."""

    flag_column: Ident | None = Field(None, description="a boolean column the source sets on delete")
    missing_from_snapshot: bool = Field(
        False, description="each batch is a full extract: a key absent from a batch was deleted")

    @model_validator(mode="after")
    def _one_mode(self) -> Deletes:
        if self.missing_from_snapshot == bool(self.flag_column):
            raise ValueError("set exactly one of flag_column or missing_from_snapshot")
        return self


class RowRule(Model):
    """A cross-field rule: a Polars SQL boolean expression each row must satisfy (null passes)."""

    name: Ident
    expr: str = Field(description="e.g. 'updated_at >= ordered_at'; over the contract's column names")
    description: str = ""
    max_reject_rate: float | None = Field(
        None, ge=0, le=1, description="share of a batch's rows this rule may reject; above it the batch blocks")

    def columns(self, contract_columns: list[str]) -> list[str]:
        """The contract columns the expression reads (for reports and quarantine): its parsed
        column references (sqlglot), so a string literal or a function name equal to a column's
        name is not one."""
        import sqlglot
        from sqlglot import expressions as exp

        try:
            named = {c.name for c in sqlglot.parse_one(self.expr, read="duckdb").find_all(exp.Column)}
        except sqlglot.errors.ParseError:  # Polars SQL beyond DuckDB's dialect: fall back to words
            named = set(re.findall(r"\w+", self.expr))
        return [c for c in contract_columns if c in named]


class RowCount(Model):
    """How many rows one ingest batch may hold; outside the range the batch blocks (tier 1)."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)


class EntityContract(Model):
    """What a silver entity must look like; drives typing, validation and history."""

    entity: Ident
    description: str = ""
    source: Ident
    primary_key: list[Ident]
    updated_at: Ident | None = None
    history: Literal["scd2", "latest", "events"] = "latest"
    max_quarantine_rate: float = Field(0.2, ge=0, le=1, description="above it the batch blocks")
    deletes: Deletes | None = None
    columns: list[ColumnContract]
    rules: list[RowRule] = Field([], description="cross-field rules; failing rows are quarantined")
    expected_rows: RowCount | None = Field(None, description="rows per batch; e.g. a truncated extract")

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, cols: list[ColumnContract]) -> list[ColumnContract]:
        names = [c.name for c in cols]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate column names: {sorted(dupes)}")
        return cols

    @model_validator(mode="after")
    def _rules_read_columns(self) -> EntityContract:
        names = [c.name for c in self.columns]
        for rule in self.rules:
            if not rule.columns(names):
                raise ValueError(f"rule {rule.name!r} reads none of the contract's columns: {rule.expr!r}")
        return self

    @model_validator(mode="after")
    def _deletes_flag_is_a_bool_column(self) -> EntityContract:
        flag = self.deletes.flag_column if self.deletes else None
        if flag and not any(c.name == flag and c.type == "bool" for c in self.columns):
            raise ValueError(f"deletes.flag_column {flag!r} must be a bool column of the contract")
        return self


# --------------------------------------------------------------------------- gold, ml, domain
class Retention(Model):
    """How long raw batches and rejects are kept; ``None`` keeps them forever."""

    bronze_days: int | None = Field(None, ge=1)
    quarantine_days: int | None = Field(None, ge=1)
    grace_hours: float = Field(
        24, ge=0, description="expired or superseded files stay readable this long before deletion")


class DateDimension(Model):
    """A calendar spanning the dates of one column of a silver or gold table (with holidays)."""

    table: Ident = Field(description="the table whose dates bound the calendar")
    column: Ident = Field(description="a date or datetime column of it")
    country: str = Field("US", description="public holidays of this country (holidays package)")
    extend: str = Field("0d", description="calendar continues this far past the last date (Polars offset: 1y, 6mo)")


class GoldTable(Model):
    """One gold table, built by exactly one of: a Python ``builder``, a ``sql`` SELECT, a ``date_dimension``."""

    name: Annotated[str, Field(pattern=r"^(fct|dim|agg)_[a-z0-9_]+$")]
    builder: str | None = Field(None, description="dotted path to a LazyFrame builder in pipelines/<domain>")
    sql: str | None = Field(None, description="a Polars SQL SELECT over silver tables and gold tables built earlier")
    date_dimension: DateDimension | None = None
    description: str
    partition_by: Ident | None = Field(
        None, description="a date column: one partition per value; a run rewrites only changed ones")
    sort_by: list[Ident] = Field(
        [], description="row order of the files; with partition_by, within each partition (sorted one "
                        "partition at a time, in bounded memory, where an ORDER BY in sql sorts the whole table)")
    touched: str | None = Field(
        None, description="dotted path to a function giving the partitions that the inputs' changes "
                          "touch; with it, a run recomputes only those (the builder takes ``partitions``)")
    touched_sql: str | None = Field(
        None, description="for a sql model with partition_by: a SELECT of the partition column giving the "
                          "partitions that the inputs' changes touch; it reads changed_<input> (the rows "
                          "of each input changed since the last build) and the inputs by name; with it, "
                          "a run recomputes only those partitions")
    serve: Literal["view", "table"] = Field(
        "view", description="in the DuckDB catalog: a view over the Parquet files, or a native table "
                            "loaded from them at each catalog build (faster queries, larger catalog)")
    columns: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_definition(self) -> GoldTable:
        given = [k for k in ("builder", "sql", "date_dimension") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of builder, sql or date_dimension (got {given or 'none'})")
        if self.touched and not (self.builder and self.partition_by):
            raise ValueError("touched needs a builder and partition_by: it names the partitions a builder "
                             "recomputes")
        if self.touched_sql and not (self.sql and self.partition_by):
            raise ValueError("touched_sql needs sql and partition_by: it names the partitions a SQL model "
                             "recomputes")
        if self.partition_by and self.partition_by in self.sort_by:
            raise ValueError(f"sort_by names the partition column {self.partition_by!r}: it is constant "
                             "within a partition and not stored in its files")
        return self


class GoldView(Model):
    """A SQL view over gold (and silver) tables, created in the DuckDB catalog for analysts.

    Views in ``gold`` are reports (``rpt_*``); another ``schema`` presents gold under names
    a tool expects (e.g. the 8 TPC-H tables, so the standard queries run unchanged).
    """

    name: Ident
    schema_: Ident = Field("gold", alias="schema", description="catalog schema of the view")
    description: str
    sql: str = Field(description="a SELECT over catalog views (gold.*, silver.*)")
    columns: dict[str, str] = Field({}, description="comments of the columns it computes (the others "
                                                    "inherit their input's, lakehouse.docs)")

    @model_validator(mode="after")
    def _reports_in_gold(self) -> GoldView:
        if self.schema_ == "gold" and not self.name.startswith("rpt_"):
            raise ValueError("views in schema gold are reports and are named rpt_*")
        if self.schema_ in ("bronze", "silver"):
            raise ValueError("views go in gold or a schema of their own, not in a layer's schema")
        return self


class Freshness(Model):
    """A table's newest business-date partition may lag the run's business date by at most this."""

    table: Annotated[str, Field(pattern=r"^(bronze|silver|gold)\.[a-z_][a-z0-9_]*$")]
    max_lag_days: int = Field(1, ge=0)


class MetricCheck(Model):
    """A tier-3 statistical check: one value per business date (and group) from a gold table."""

    name: Ident
    table: Ident = Field(description="a gold table")
    date_column: Ident
    group_by: list[Ident] = []
    agg: Literal["sum", "mean", "count", "n_unique"] = "sum"
    column: Ident | None = Field(None, description="the aggregated column (not needed for count)")

    @model_validator(mode="after")
    def _column_unless_count(self) -> MetricCheck:
        if self.agg != "count" and self.column is None:
            raise ValueError(f"agg {self.agg!r} needs a column")
        return self


class QualityConfig(Model):
    """Tier-3 (statistical, never blocking) checks and their thresholds (ADR 0011)."""

    baseline_weeks: int = Field(8, ge=3, le=52, description="same-weekday history a day is compared with")
    min_baseline_days: int = Field(4, ge=3, description="fewer same-weekday values: no verdict")
    zscore: float = Field(3.0, gt=0, description="|z| above this is an outlier")
    iqr_factor: float = Field(1.5, gt=0, description="outside Q1 - k*IQR .. Q3 + k*IQR is an outlier")
    max_volatility: float = Field(
        0.5, gt=0, description="day-over-day change may differ from its weekday's usual change by this share")
    min_relative_change: float = Field(
        0.25, ge=0, description="z-score and IQR flags also need |value - baseline mean| >= this share of it")
    alert_min_methods: int = Field(
        2, ge=1, le=3, description="Slack hears of a group when this many methods flag it (all are recorded)")
    reject_baseline_days: int = Field(
        28, ge=3, le=366, description="a rule's reject rate is compared with its own rates on the days before")
    reject_min_increase: float = Field(
        0.01, ge=0, le=1, description="a jump must also raise the rate by this share of the rows (0.01 = 1 point)")
    reject_min_rows: int = Field(
        500, ge=1, description="smaller batches get no reject-jump verdict (one row is too large a share)")
    metrics: list[MetricCheck] = []


class MLConfig(Model):
    target_table: str = "fct_order_lines"
    horizon_days: int = Field(7, ge=1, le=60)
    holdout_days: int = Field(28, ge=7)
    cv_folds: int = Field(3, ge=1, le=12, description="rolling-origin windows; the last is the holdout")
    min_history_days: int = Field(400, ge=30)
    seed: int = 42
    train_schedule: str = Field("0 6 * * 1", description="cron of the weekly training DAG")
    psi_threshold: float = Field(0.2, gt=0, description="PSI above which a feature counts as drifted")
    drift_min_rows: int = Field(500, ge=1, description="smaller scoring windows are too noisy to alert on")
    drift_reference_days: int = Field(
        91, ge=7, description="the last N training days are the drift reference (seasonal levels move)")
    wape_degradation: float = Field(
        0.25, gt=0, description="alert when live WAPE exceeds the holdout WAPE by this share")
    accuracy_window_days: int = Field(7, ge=1, description="days of actuals the live WAPE is measured on")
    accuracy_min_rows: int = Field(1000, ge=1, description="fewer forecast/actual pairs than this: no verdict")
    chunk_rows: int = Field(
        2_000_000, ge=1000, description="series x days rows of the daily frame built and scored at a time")
    max_train_rows: int = Field(
        4_000_000, ge=1000, description="training keeps a fixed sample of series within this many frame rows")
    duckdb_memory_limit: str = Field(
        "2GB", description="DuckDB memory of the ML steps' queries; beyond it DuckDB spills to disk")
    xgboost: dict[str, Any] = {}


class DomainConfig(Model):
    """Everything the framework needs to run one domain."""

    name: Ident
    timezone: str = Field("UTC", description="the zone of business dates: a day is midnight to midnight there")
    start_date: date
    end_date: date | None = Field(None, description="last business date to schedule (tests, migrations)")
    schedule: str = "0 0 * * *"
    lake_root: str
    catalog_path: str
    sources: list[Source]
    contracts: list[EntityContract]
    gold: list[GoldTable]
    views: list[GoldView] = []
    ml: MLConfig | None = None
    retention: Retention = Retention()
    freshness: list[Freshness] = Field(
        [], description="tables checked after each run; a stale one alerts (non-blocking)")
    quality: QualityConfig = QualityConfig()
    task_timeout_minutes: float = Field(
        120, gt=0, description="a task running longer fails (Airflow's execution_timeout); one stuck in "
                               "native code is ended a little later with its threads' stacks logged "
                               "(lakehouse.watchdog), so it is retried and alerts instead of hanging")

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _time_zone(v)))

    def source(self, name: str) -> DatabaseSource | RestSource | FileSource:
        return next(s for s in self.sources if s.name == name)

    def contract(self, entity: str) -> EntityContract:
        return next(c for c in self.contracts if c.entity == entity)

    def source_of(self, contract: EntityContract) -> DatabaseSource | RestSource | FileSource | None:
        """The source a contract reads; None when it is not configured (tests, retired sources)."""
        return next((s for s in self.sources if s.name == contract.source), None)

    @field_validator("end_date", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def lake(self) -> Path | str:
        """The lake root: a local ``Path``, or an object-store URI kept as a string (ADR 0013)."""
        return self.lake_root if "://" in self.lake_root else Path(self.lake_root)


# --------------------------------------------------------------------------- loading
# innermost first: a default may itself hold ${VAR}
_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^${}]*))?\}")


def _home() -> Path:
    return Path(os.environ.get("LAKEHOUSE_HOME", ".")).resolve()


def _expand_env(value: Any) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            env = {"LAKEHOUSE_HOME": str(_home())} | dict(os.environ)
            if m.group(1) in env:
                return env[m.group(1)]
            if m.group(2) is None:
                raise ConfigError(f"environment variable {m.group(1)} is not set")
            return m.group(2)

        while _ENV.search(value):
            value = _ENV.sub(sub, value)
        return value
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def _nodes_along(node: yaml.Node | None, loc: tuple[int | str, ...]) -> list[yaml.Node]:
    """The YAML nodes a pydantic error location passes through, outermost first (as far as it goes)."""
    path = [node] if node is not None else []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        path.append(node)
    return path


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    path = _nodes_along(node, loc)
    return path[-1].start_mark.line + 1 if path else None


FLOW_HINT = ("; in a one-line {...} or [...] an unquoted ', ' ends the value and ': ' starts a key: "
             "quote the value, e.g. expr: \"coalesce(a, b) > 0\"")


def _flow_hint(node: yaml.Node | None, loc: tuple[int | str, ...], err: dict) -> str:
    """A hint for the error YAML's flow style causes: a value cut at an unquoted comma leaves
    its tail as a key with no value (pydantic: an unknown field, or a value of None)."""
    if err.get("input") is not None and err.get("type") != "extra_forbidden":
        return ""
    flows = [n for n in _nodes_along(node, loc) if isinstance(n, yaml.CollectionNode) and n.flow_style]
    return FLOW_HINT if flows else ""


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parsed YAML and its node tree (for line numbers), cached while the file is unchanged.

    Every Airflow task and CLI call loads the domain; parsing is most of that cost.
    """
    stat = path.stat()
    data, node = _parse_yaml(str(path), stat.st_mtime_ns, stat.st_size)
    return copy.deepcopy(data), node


@functools.lru_cache(maxsize=256)
def _parse_yaml(path: str, _mtime_ns: int, _size: int) -> tuple[Any, yaml.Node | None]:
    text = Path(path).read_text()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {exc}") from exc
    try:
        return yaml.load(text, Loader=loader), node
    except (yaml.YAMLError, ValueError) as exc:  # a value YAML types but cannot build: 2026-10-32
        bad = _unbuildable_scalar(node)
        where = f":{bad.start_mark.line + 1}" if bad is not None else ""
        value = f" {bad.value!r}" if bad is not None else ""
        raise ConfigError(f"{path}{where}: the value{value} is not valid YAML ({exc})") from exc


def _unbuildable_scalar(node: yaml.Node | None) -> yaml.ScalarNode | None:
    """The first scalar whose YAML type (a date, say) cannot be built from its text."""
    if isinstance(node, yaml.ScalarNode):
        try:
            yaml.constructor.SafeConstructor().construct_object(node)
        except (yaml.YAMLError, ValueError):
            return node
        return None
    children = (node.value if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    return next((bad for child in children if (bad := _unbuildable_scalar(child)) is not None), None)


def domain_name(config_dir: str | Path) -> str:
    """A domain's ``name:`` from its ``domain.yaml`` alone (cheap: no other file is read); a
    file without a valid one gets ``load_domain``'s error, naming file and line."""
    data, _ = _read_yaml(Path(config_dir) / "domain.yaml")
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and re.fullmatch(IDENT, name):
        return name
    return load_domain(config_dir).name


def load_domain(config_dir: str | Path) -> DomainConfig:
    """Load ``domain.yaml``, ``sources.yaml``, ``contracts/*.yaml``, ``gold.yaml`` and ``views.yaml``.

    Relative paths in ``lake_root``/``catalog_path``/``landing_dir`` resolve against
    ``LAKEHOUSE_HOME`` (default: the current directory).
    """
    config_dir = Path(config_dir)
    parts: dict[str, Any] = {}
    nodes: dict[str, tuple[Path, yaml.Node | None]] = {}
    domain_data, domain_node = _read_yaml(config_dir / "domain.yaml")
    parts.update(domain_data)
    for key in domain_data:
        nodes[key] = (config_dir / "domain.yaml", _child(domain_node, key))
    for key in ("sources", "gold", "views"):
        if key == "views" and not (config_dir / "views.yaml").exists():
            continue  # reporting views are optional
        data, node = _read_yaml(config_dir / f"{key}.yaml")
        parts[key] = data
        nodes[key] = (config_dir / f"{key}.yaml", node)
    contracts = []
    for i, path in enumerate(sorted((config_dir / "contracts").glob("*.yaml"))):
        data, node = _read_yaml(path)
        contracts.append(data)
        nodes[f"contracts.{i}"] = (path, node)
    parts["contracts"] = contracts
    try:
        cfg = DomainConfig.model_validate(_expand_env(parts))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, nodes)) from None
    return _resolve_paths(cfg)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    return None


def _explain(exc: ValidationError, nodes: dict[str, tuple[Path, yaml.Node | None]]) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        key = f"contracts.{loc[1]}" if loc[0] == "contracts" and len(loc) > 1 else str(loc[0])
        rest = loc[2:] if key.startswith("contracts.") else loc[1:]
        path, node = nodes.get(key, (Path("domain.yaml"), None))
        line = _line_of(node, rest)
        where = ".".join(str(p) for p in loc)
        hint = _flow_hint(node, rest, err)
        lines.append(f"{path}:{line or '?'}: {where}: {err['msg']} (got {err.get('input')!r}){hint}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _resolve_paths(cfg: DomainConfig) -> DomainConfig:
    home = _home()

    def res(p: str) -> str:
        return p if "://" in p or Path(p).is_absolute() else str(home / p)

    sources = [
        s.model_copy(update={"landing_dir": res(s.landing_dir)}) if isinstance(s, FileSource) else s
        for s in cfg.sources
    ]
    return cfg.model_copy(
        update={"lake_root": res(cfg.lake_root), "catalog_path": res(cfg.catalog_path), "sources": sources}
    )
