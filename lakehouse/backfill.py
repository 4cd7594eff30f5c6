"""Announce a finished backfill once, instead of once per backfilled day.

Airflow emits an asset event for every successful run of a task with outlets, so a
90-day backfill of a DAG that feeds an asset would schedule its consumers up to 90
times (apache/airflow#52665). The daily DAG's last task therefore emits the
``<domain>_gold_history`` asset only from the *last* backfill run to get there:

* Airflow creates all runs of a backfill, and their task instances, up front. The
  announcing task of every other backfill run is either finished (success, skipped,
  failed, upstream_failed) or still to come (no state, scheduled, queued, running).
* Task instance states are written by the tasks themselves, but a task that has
  decided reports its state only after it returns. Each run therefore also records
  its decision in a ledger under an inter-process lock; a run in the ledger whose
  task is still ``running`` has decided and counts as done.

So exactly one run, the last to decide, sees every other one done and announces,
whatever ``--max-active-runs`` is. If that last run fails before deciding, nobody
announces: the weekly schedule trains anyway, and rerunning the failed day
(``--reprocess-behavior failed``) announces then.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse import storage

FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}
BACKFILL_PREFIX = "backfill__"


def is_backfill(run_id: str) -> bool:
    return run_id.startswith(BACKFILL_PREFIX)


def others_pending(run_id: str, states: dict[str, str | None], decided: set[str]) -> list[str]:
    """Pure: backfill runs other than ``run_id`` whose announcing task has yet to decide.

    ``states`` maps run ids to the state of the announcing task in that run.
    """
    return sorted(
        other for other, state in states.items()
        if other != run_id and is_backfill(other) and state not in FINISHED
        and not (state == "running" and other in decided)
    )


def should_announce(lake: Path, dag_id: str, run_id: str, task_states) -> tuple[bool, str]:
    """Decide, under the lock, whether this run is the last of its backfill to finish.

    ``task_states()`` returns ``{run_id: state}`` of the announcing task across the
    DAG's runs (in Airflow: ``RuntimeTaskInstance.get_task_states``).
    """
    if not is_backfill(run_id):
        return False, "not a backfill run: the scheduled cadence covers it"
    ledger_path = storage.state_path(lake, "backfill_announcements", f"{dag_id}.json")
    with storage.locked(lake, f"backfill_{dag_id}"):
        ledger = storage.read_json(ledger_path, {})
        pending = others_pending(run_id, task_states(), set(ledger))
        ledger[run_id] = "announced" if not pending else "deferred"
        storage.write_json(ledger_path, ledger)
    if pending:
        return False, f"{len(pending)} other backfill runs still to finish (e.g. {pending[0]})"
    return True, "last run of the backfill"
