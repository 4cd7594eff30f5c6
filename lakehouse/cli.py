"""``lakehouse``: run a domain's steps outside Airflow, rebuild the catalog, compare lake hashes.

Airflow is how the pipeline runs in production; this CLI is for debugging a day
locally and for checking that two lakes hold the same content.
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path


def _config_dir(domain: str, given: Path | None) -> Path:
    """The domain's configuration folder: ``--config-dir``, else ``$LAKEHOUSE_CONFIG_DIR``,
    else the folder named ``domain`` on the domain search path (``lakehouse.domains``:
    ``$LAKEHOUSE_DOMAIN_PATH``, else the project's ``configs/``), as the DAGs find it."""
    import os

    from lakehouse import domains

    found = given or (Path(os.environ["LAKEHOUSE_CONFIG_DIR"]) if os.environ.get("LAKEHOUSE_CONFIG_DIR")
                      else domains.find(domain))
    if found is None:
        known = ", ".join(domains.discover()) or "none"
        raise SystemExit(f"lakehouse: no domain {domain!r} on the domain path "
                         f"{os.pathsep.join(map(str, domains.search_path()))} (found: {known}; "
                         f"--config-dir, LAKEHOUSE_CONFIG_DIR or {domains.PATH_VARIABLE})")
    if not (found / "domain.yaml").is_file():
        raise SystemExit(f"lakehouse: no domain.yaml in {found} (--config-dir, LAKEHOUSE_CONFIG_DIR "
                         f"or {domains.PATH_VARIABLE})")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument("--domain", default="retail")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (default: one line saying what failed)")
    parser.add_argument("--config-dir", type=Path, default=None,
                        help="the domain's configuration folder (default: $LAKEHOUSE_CONFIG_DIR, else "
                             "the --domain folder on $LAKEHOUSE_DOMAIN_PATH, else configs/<domain>)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one business date's steps in order, without Airflow")
    run.add_argument("--date", type=date.fromisoformat, required=True)
    run.add_argument("--force-extract", action="store_true")
    cat = sub.add_parser("catalog", help="rebuild and swap in the DuckDB catalog")
    cat.add_argument("--as-of", action="append", default=[], metavar="WHEN",
                     help="write a catalog of the lake as of a UTC timestamp or layer.table@VERSION "
                          "(repeatable) to --out instead; the served catalog is untouched")
    cat.add_argument("--out", type=Path, default=None, help="where --as-of writes its catalog")
    hist = sub.add_parser("history", help="the versions (commits) of a Delta table, newest first")
    hist.add_argument("table", help="layer.table, e.g. gold.fct_order_lines")
    hist.add_argument("--limit", type=int, default=20)
    sub.add_parser("hashes", help="print an order-independent content hash of every table")
    sub.add_parser("rebuild", help="regenerate silver and gold from bronze alone (full refresh)")
    model = sub.add_parser("model", help="the model registry: list versions, promote, roll back")
    model.add_argument("action", choices=["list", "promote", "rollback"])
    model.add_argument("--name", default=None, help="model name (default: the domain's forecast model)")
    model.add_argument("--version", help="version to promote")
    model.add_argument("--reason", default="manual")
    model.add_argument("--on", type=date.fromisoformat, default=None,
                       help="business date from which the change serves (default: today)")
    st = sub.add_parser("status", help="last runs, freshness, rows, partitions and age of every table; quarantine")
    st.add_argument("--as-of", type=date.fromisoformat, default=None,
                    help="business date freshness is measured against (default: yesterday)")
    rep = sub.add_parser("report", help="write the self-contained HTML health dashboard")
    rep.add_argument("--out", type=Path, default=None, help="default: <catalog dir>/reports/<domain>_health.html")
    rep.add_argument("--as-of", type=date.fromisoformat, default=None,
                     help="business date freshness is measured against (default: yesterday)")
    al = sub.add_parser("alerts", help="open alert incidents and their digests; --resolve KEY closes one")
    al.add_argument("--resolve", metavar="KEY", help="close an incident (silences it until it fails again)")
    qua = sub.add_parser("quarantine", help="replay quarantined rows against the current contract; list and "
                                            "retry set-aside (unreadable) files")
    qua.add_argument("action", choices=["replay", "files", "retry-file"],
                     help="replay: rows of --entity since --since; files: the set-aside files and their "
                          "state; retry-file: the next run of --source takes --file again")
    qua.add_argument("--entity", help="replay: the entity")
    qua.add_argument("--since", type=date.fromisoformat, help="replay: first ingest date replayed")
    qua.add_argument("--source", help="retry-file: the file source")
    qua.add_argument("--file", help="retry-file: the file's name")
    ret = sub.add_parser("retention", help="expire bronze and quarantine partitions past retention, vacuum")
    ret.add_argument("--date", type=date.fromisoformat, required=True, help="business date to count from")
    vac = sub.add_parser("vacuum", help="delete retired and abandoned files older than the grace period")
    vac.add_argument("--grace-hours", type=float, default=None)
    sub.add_parser("optimize", help="compact the small files of every Delta table (a new version each)")
    doc = sub.add_parser("docs", help="write the data dictionary (Markdown) from the catalog's comments")
    doc.add_argument("--out", type=Path, default=None, help="default: docs/data_dictionary/<domain>.md")
    sql = sub.add_parser("sql", help="query the catalog, read-only and sandboxed to the lake: statements as an "
                                     "argument, a script on stdin, or a prompt (no argument at a terminal)")
    sql.add_argument("query", nargs="?", default=None,
                     help="statements separated by ';' (default: read stdin, or a prompt at a terminal)")
    sql.add_argument("--max-rows", type=int, default=50, help="rows printed per result (0: all)")
    sql.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    sql.add_argument("-i", "--interactive", action="store_true", help="a prompt even when stdin is not a terminal")
    sql.add_argument("--as-of", action="append", default=[], metavar="WHEN",
                     help="query the lake as it was: a UTC timestamp (2026-11-03T12:00:00Z) for every "
                          "Delta table, or layer.table@VERSION for one (repeatable; see lakehouse history)")
    args = parser.parse_args(argv)
    try:
        _dispatch(args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if args.debug:
            raise
        raise SystemExit(error_line(exc)) from None


def error_line(exc: BaseException) -> str:
    """What ``lakehouse`` prints for an error instead of a traceback: the error's type and its
    message (whole when it is a configuration error, which lists every mistake with its file
    and line; else the first line), and how to see the traceback."""
    from lakehouse.config import ConfigError

    text = str(exc).strip()
    if isinstance(exc, ConfigError):
        return f"lakehouse: {text}"
    first = text.splitlines()[0] if text else ""
    return f"lakehouse: {type(exc).__name__}: {first} (--debug shows the traceback)"


def _dispatch(args: argparse.Namespace) -> None:
    from lakehouse.config import load_domain

    config_dir = str(_config_dir(args.domain, args.config_dir))
    cfg = load_domain(config_dir)
    if args.command == "run":
        _run_command(cfg, args)
    elif args.command == "catalog":
        _catalog_command(cfg, args)
    elif args.command == "history":
        from lakehouse import timetravel

        print(json.dumps(_or_exit(lambda: timetravel.history(cfg, args.table, args.limit)), indent=1))
    elif args.command == "rebuild":
        from lakehouse.rebuild import rebuild

        print(json.dumps(rebuild(cfg), indent=1))
    elif args.command == "model":
        print(json.dumps(_model_command(cfg, args), indent=1, default=str))
    elif args.command == "status":
        from lakehouse.status import render

        print(_or_exit(lambda: render(cfg, args.as_of)))
    elif args.command == "report":
        from lakehouse.report import write_report

        print(write_report(cfg, args.out, args.as_of))
    elif args.command == "alerts":
        from lakehouse import alerts

        if args.resolve:
            if alerts.resolve(args.resolve, f":mute: *{args.resolve}* closed by hand.") is None:
                raise SystemExit(f"no open incident {args.resolve!r}")
        found = alerts.open_incidents()
        where = alerts.state_dir() / "incidents.json"
        if found:
            print(json.dumps(found, indent=1))
        elif where.exists():
            print(f"no open incidents ({where})")
        else:  # nothing ever fired here, or the tasks write elsewhere: say where we looked
            print(f"no incident state at {where}: no alert has fired with this AIRFLOW_HOME "
                  "(set AIRFLOW_HOME or LAKEHOUSE_ALERT_STATE to the one the tasks run with)")
    elif args.command == "docs":
        from lakehouse.airflow_env import PROJECT
        from lakehouse.docs import write_data_dictionary

        if not Path(cfg.catalog_path).exists():
            raise SystemExit(f"lakehouse docs: no catalog at {cfg.catalog_path}; run `lakehouse --domain "
                             f"{cfg.name} catalog` after a run")
        print(write_data_dictionary(cfg, args.out or PROJECT / "docs" / "data_dictionary" / f"{cfg.name}.md"))
    elif args.command == "quarantine":
        _quarantine_command(cfg, args)
    elif args.command == "retention":
        from lakehouse.retention import apply_retention

        print(json.dumps(apply_retention(cfg, args.date)))
    elif args.command == "sql":
        _sql_command(cfg, args)
    elif args.command == "optimize":
        from lakehouse.storage import optimize_all

        print(json.dumps(optimize_all(cfg.lake), indent=1))
    elif args.command == "vacuum":
        from lakehouse.storage import vacuum

        grace = cfg.retention.grace_hours if args.grace_hours is None else args.grace_hours
        print(json.dumps([str(p) for p in vacuum(cfg.lake, grace)], indent=1))
    else:
        from lakehouse.storage import layer_hashes

        print(json.dumps(layer_hashes(cfg.lake), indent=1))


def _or_exit(call):
    """Run ``call``; a user's mistake (bad --as-of, unknown table) is one line, not a traceback."""
    from lakehouse.status import NoLake
    from lakehouse.timetravel import AsOfError

    try:
        return call()
    except (AsOfError, NoLake, ValueError) as exc:
        raise SystemExit(f"lakehouse: {exc}") from None


def _catalog_command(cfg, args: argparse.Namespace) -> None:
    if not args.as_of:
        from lakehouse.catalog import build_catalog

        print(build_catalog(cfg))
        return
    from lakehouse import timetravel

    if args.out is None:
        raise SystemExit("lakehouse catalog --as-of: give --out FILE (the served catalog stays current)")
    as_of = _or_exit(lambda: timetravel.parse(args.as_of))
    print(_or_exit(lambda: timetravel.build(cfg, as_of, args.out)))


def _quarantine_command(cfg, args: argparse.Namespace) -> None:
    from lakehouse import bronze, tasks

    needed = {"replay": ("entity", "since"), "files": (), "retry-file": ("source", "file")}[args.action]
    if missing := [f"--{n}" for n in needed if getattr(args, n) is None]:
        raise SystemExit(f"lakehouse quarantine {args.action}: needs {' and '.join(missing)}")
    if args.action == "replay":
        print(json.dumps(tasks.replay(cfg, args.entity, args.since), indent=1, default=str))
    elif args.action == "files":
        files = bronze.set_aside_files(cfg)
        for f in files:
            print(f"{f['ingest_date']}  {f['source']}  {f['file']}  [{f['state']}]\n    {f['reason']}\n"
                  f"    kept at {f['kept_at']}")
        print(f"{len(files)} set-aside file(s)" if files else "no set-aside files")
    else:
        entry = _or_exit(lambda: bronze.retry_file(cfg, args.source, args.file))
        print(f"{args.file} of {args.source} will be taken again by the next run of a date at or after "
              f"{entry['ingest_date']} (or rerun that date with --force-extract)")


def _sql_command(cfg, args: argparse.Namespace) -> None:
    """Statements from the argument, stdin or a prompt (``lakehouse.sql_shell``); each result is
    printed whole up to ``--max-rows``, each SQL mistake is one line on stderr, and the exit
    status is non-zero when any statement failed."""
    import contextlib
    import sys

    from lakehouse import sql_shell, timetravel
    from lakehouse.catalog import connect_read_only

    as_of = _or_exit(lambda: timetravel.parse(args.as_of)) if args.as_of else None
    if not Path(cfg.catalog_path).exists():
        raise SystemExit(f"lakehouse sql: no catalog at {cfg.catalog_path} yet: a daily run builds it "
                         f"(lakehouse run --date D, or make demo)")
    prompt = args.query is None and (args.interactive or sys.stdin.isatty())

    def session() -> int:
        opened = timetravel.connect(cfg, as_of) if as_of else contextlib.closing(connect_read_only(cfg))
        with opened as con:
            if as_of is not None and (current := timetravel.unversioned(cfg)):
                print(f"as of {', '.join(args.as_of)}: Delta tables at that version; not versioned, served "
                      f"as now: {', '.join(current)}", file=sys.stderr)
            if prompt:
                return sql_shell.repl(con, fmt=args.format, max_rows=args.max_rows)
            text = args.query if args.query is not None else sys.stdin.read()
            return sql_shell.run(con, text, fmt=args.format, max_rows=args.max_rows)

    failed = _or_exit(session)
    if failed and not prompt:
        raise SystemExit(1)


def _run_command(cfg, args: argparse.Namespace) -> None:
    """Run one date's daily steps in declared order; every task's outcome is printed and
    recorded in the run history (``lakehouse status``), and a failure exits non-zero after
    every independent task has run."""
    import uuid
    from datetime import UTC, datetime

    from lakehouse import runlog, steps

    # unique per invocation: two CLI runs of one date (a race, a rerun) are two runs in the history
    run_id = f"cli/{args.date}/{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    ctx = steps.RunContext(cfg=cfg, run_date=args.date, run_id=run_id, force_extract=args.force_extract)

    import sys

    progress = sys.stderr  # bound now: below, stdout is sent to stderr as well

    def record(outcome: steps.Outcome) -> None:
        print(step_line(outcome), file=progress, flush=True)
        end = datetime.now(UTC)
        runlog.record(cfg.lake, {
            "dag_id": f"{cfg.name}_daily", "run_id": run_id, "run_type": "cli",
            "business_date": args.date.isoformat(), "task_id": outcome.task_id, "try_number": 1,
            "state": outcome.state, "start": (end - timedelta(seconds=outcome.seconds)).isoformat(),
            "end": end.isoformat(), "seconds": round(outcome.seconds, 3),
            "error": runlog.error_text(outcome.error), "peak_rss_mb": outcome.peak_rss_mb})

    import contextlib

    # stdout is the outcome (JSON, for scripts); the tasks' logs, Airflow's structlog included
    # (it binds the stdout of the moment it is set up), go to stderr
    with contextlib.redirect_stdout(sys.stderr):
        outcomes = steps.run_local(steps.DAILY, ctx, on_outcome=record, raise_on_failure=False)
    print(json.dumps({k: {"state": o.state, "seconds": round(o.seconds, 2), "peak_rss_mb": o.peak_rss_mb,
                          **({"result": o.result} if o.result is not None else {}),
                          **({"error": f"{type(o.error).__name__}: {o.error}"} if o.error else {})}
                      for k, o in outcomes.items()}, indent=1, default=str))
    print(run_summary_text(cfg.name, args.date, outcomes), file=progress)
    failed = [k for k, o in outcomes.items() if o.state == "failed"]
    if failed:
        raise SystemExit(f"lakehouse run {args.date}: {len(failed)} task(s) failed: {', '.join(failed)}")


def step_line(outcome) -> str:
    """One progress line per finished task (stderr): its state, seconds, peak RSS and, for silver, rows."""
    result = outcome.result if isinstance(outcome.result, dict) else {}
    rows = (f"  {result['valid']:,} valid, {result['quarantined']:,} quarantined"
            if {"valid", "quarantined"} <= result.keys() else "")
    peak = "" if outcome.peak_rss_mb is None else f"{outcome.peak_rss_mb:>8,.0f} MB"
    return f"  {outcome.task_id:<44}{outcome.state:<16}{outcome.seconds:>7.1f} s{peak}{rows}"


def run_summary_text(domain: str, day: date, outcomes: dict) -> str:
    """Pure: the few lines a person reads at the end of ``lakehouse run`` (the JSON on stdout
    holds the same numbers): tasks by state, the wall time, rejects by entity and rule, and
    each failure's first line."""
    states: dict[str, int] = {}
    for o in outcomes.values():
        states[o.state] = states.get(o.state, 0) + 1
    seconds = sum(o.seconds for o in outcomes.values())
    lines = [f"lakehouse run {day} ({domain}): {len(outcomes)} tasks, "
             + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + f", {seconds:.1f} s"]
    rejects = []
    for task_id, o in outcomes.items():
        by_rule = o.result.get("rejected_by_rule") if isinstance(o.result, dict) else None
        if by_rule:
            rules = ", ".join(f"{rule} {n:,}" for rule, n in by_rule.items())
            rejects.append(f"  {task_id.removeprefix('silver_')}: {o.result['quarantined']:,} rows ({rules})")
    lines += ["rejected rows (silver.quarantine), by entity and rule:", *rejects] if rejects else [
        "rejected rows: none"]
    for task_id, o in outcomes.items():
        result = o.result if isinstance(o.result, dict) else {}
        lines += [f"SET ASIDE by {task_id}: {f}" for f in result.get("set_aside", [])]
        if short := result.get("below_expected_rows"):
            lines.append(f"WARNING {task_id}: {short}")
        if later := result.get("left_for_later"):
            lines.append(f"{task_id}: {len(later)} file(s) arrived after the day's window, left for a later "
                         f"day's run: {', '.join(later[:5])}{' ...' if len(later) > 5 else ''}")
    for task_id, o in outcomes.items():
        if o.state == "failed":
            first = str(o.error or "").strip().splitlines()
            lines.append(f"FAILED {task_id}: {type(o.error).__name__}: {first[0][:1000] if first else ''}")
    return "\n".join(lines)


def _model_command(cfg, args: argparse.Namespace) -> object:
    from lakehouse import registry, tasks

    name = args.name or tasks.forecast_module(cfg).MODEL_NAME
    today = args.on or date.today()
    if args.action == "promote":
        if not args.version:
            raise SystemExit("lakehouse model promote needs --version")
        registry.promote(cfg.lake, name, args.version, reason=args.reason, on=today)
    elif args.action == "rollback":
        registry.rollback(cfg.lake, name, on=today, reason=args.reason)
    rows = registry.registered(cfg.lake, name)
    champion = registry.champion(cfg.lake, name)
    cols = [c for c in ("model_version", "trained_for_date", "metric_wape", "metric_wape_seasonal_naive")
            if c in rows.columns]
    return {"model": name, "champion": champion,
            "versions": rows.select(cols).sort(cols[1]).to_dicts() if rows.height else []}


if __name__ == "__main__":
    main()
