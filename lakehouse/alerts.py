"""Alerts on-call can trust: one Slack message per incident, a recovery when it clears.

What alerts (ADR 0009):

* a task that failed for good (Airflow calls ``on_failure_callback`` after the last
  retry only; ``on_retry_callback`` is deliberately not used);
* a DAG run that failed, unless one of its tasks already opened an incident;
* data alerts from the pipeline (feature drift, degrading accuracy, quality gates)
  through ``incident(key, text)``.

An *incident* is keyed by what is broken (``task:<dag>.<task>``, ``dag:<dag>``,
``drift:<model>``...), not by date: while it is open, further failures are folded
into it instead of messaging again, so a 10-day backfill over a broken source
sends one message. The message carries DAG, task, logical date, try number, an
error excerpt and the log link; its digest (every logical date that failed) is
kept, shown by ``lakehouse alerts`` and sent with the recovery message when the
task next succeeds.

Transport: slack-sdk, with credentials only from the environment or an Airflow
connection: ``SLACK_WEBHOOK_URL`` (incoming webhook), or ``SLACK_BOT_TOKEN`` and
``SLACK_CHANNEL`` (``chat.postMessage``), or the connection ``slack_alerts`` (its
password is the webhook URL). The URL and token are never logged. Slack being
down, slow or rate limiting never fails the pipeline: a 429 is retried after its
``Retry-After`` (at most twice, and only if that is under ``MAX_RETRY_AFTER_S``),
a request times out after ``TIMEOUT_S``, and any error is logged, never raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT_S = 5
MAX_RETRY_AFTER_S = 10
MAX_RETRIES = 2
CONNECTION_ID = "slack_alerts"
ERROR_EXCERPT_CHARS = 500


# ----------------------------------------------------------------------------- transport
def _retry_handlers() -> list:
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    class BoundedRateLimitHandler(RateLimitErrorRetryHandler):
        """Honour Retry-After, but never wait longer than MAX_RETRY_AFTER_S."""

        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            if not super()._can_retry(state=state, request=request, response=response, error=error):
                return False
            header = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
            wait = int((header[0] if isinstance(header, list) else header) or 1)
            return wait <= MAX_RETRY_AFTER_S

    return [BoundedRateLimitHandler(max_retry_count=MAX_RETRIES)]


def _webhook_from_connection() -> str | None:
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # no Airflow, no such connection: not configured
        return None
    return conn.password or conn.host or None


def send(text: str) -> bool:
    """Post one message; True if Slack accepted it. Never raises, never logs credentials."""
    try:
        token, channel = os.environ.get("SLACK_BOT_TOKEN"), os.environ.get("SLACK_CHANNEL")
        if token and channel:
            from slack_sdk import WebClient

            client = WebClient(token=token, timeout=TIMEOUT_S, retry_handlers=_retry_handlers(),
                               base_url=os.environ.get("SLACK_API_URL", WebClient.BASE_URL))
            return bool(client.chat_postMessage(channel=channel, text=text).get("ok"))
        url = os.environ.get("SLACK_WEBHOOK_URL") or _webhook_from_connection()
        if not url:
            log.warning("alert (Slack not configured): %s", text)
            return False
        from slack_sdk.webhook import WebhookClient

        resp = WebhookClient(url, timeout=TIMEOUT_S, retry_handlers=_retry_handlers()).send(text=text)
        if resp.status_code != 200:
            log.error("Slack answered HTTP %s to an alert; it is kept in the incident log", resp.status_code)
        return resp.status_code == 200
    except Exception as exc:  # alerting must never fail or stall the pipeline
        log.error("could not deliver an alert (%s); it is kept in the incident log", type(exc).__name__)
        return False


# ----------------------------------------------------------------------------- incidents
def state_dir() -> Path:
    """Where incidents are kept: ``LAKEHOUSE_ALERT_STATE``, else under the Airflow home, which
    is ``AIRFLOW_HOME``, else the project's (``lakehouse.airflow_env``: what ``make demo`` and
    ``make airflow-ui`` give Airflow), so a terminal in the project reads what the tasks wrote."""
    explicit = os.environ.get("LAKEHOUSE_ALERT_STATE")
    if explicit:
        return Path(explicit)
    from lakehouse.airflow_env import airflow_env

    home = os.environ.get("AIRFLOW_HOME") or airflow_env(os.environ.get("LAKEHOUSE_HOME"))["AIRFLOW_HOME"]
    return Path(home) / "lakehouse_alerts"


def _update(mutate: Callable[[dict], Any]) -> Any:
    from lakehouse import storage

    root = state_dir()
    root.mkdir(parents=True, exist_ok=True)
    with storage.locked(root, "incidents"):
        incidents = storage.read_json(root / "incidents.json", {})
        result = mutate(incidents)
        storage.write_json(root / "incidents.json", incidents)
    return result


def open_incidents() -> dict[str, dict]:
    from lakehouse import storage

    return storage.read_json(state_dir() / "incidents.json", {})


def incident(key: str, text: str, *, when: str | None = None) -> bool:
    """Record a failure of ``key``; message only if it opens a new incident. Returns whether it did."""
    now = datetime.now(UTC).isoformat(timespec="seconds")

    def mutate(incidents: dict) -> bool:
        current = incidents.get(key)
        if current is not None:
            current["count"] += 1
            if when and when not in current["dates"]:
                current["dates"].append(when)
            if when and when not in current.setdefault("pending", []):
                current["pending"].append(when)
            current["last_seen"] = now
            return False
        incidents[key] = {"opened": now, "last_seen": now, "count": 1, "dates": [when] if when else [],
                          "pending": [when] if when else [], "text": text}
        return True

    opened = _update(mutate)
    if opened:
        send(text)
    return opened


def resolve(key: str, text: str | None = None) -> dict | None:
    """Close ``key``'s incident if open and send a recovery with its digest; returns the incident."""
    closed = _update(lambda incidents: incidents.pop(key, None))
    if closed is not None and not closed.get("silent"):
        send((text or f":white_check_mark: *{key}* recovered.") + _digest(closed))
    return closed


def settle(key: str, when: str, text: str) -> dict | None:
    """``key`` succeeded for date ``when``: recover once every failed date has, or a later date.

    A backfill runs days side by side, so a success for an earlier day that never failed
    (or one of several failed days succeeding) says nothing about the rest: no recovery yet.
    """
    def mutate(incidents: dict) -> dict | None:
        current = incidents.get(key)
        if current is None:
            return None
        pending = current.get("pending") or []
        if pending and when > max(pending):
            pending.clear()  # a later day succeeded: whatever broke the failed days works again
        elif pending and when not in pending:
            return None  # an earlier day that never failed: says nothing about the failed ones
        if when in pending:
            pending.remove(when)
        return incidents.pop(key) if not pending else None

    closed = _update(mutate)
    if closed is not None and not closed.get("silent"):
        send(text + _digest(closed))
    return closed


def track(key: str, failing: bool, *, when: str, problem: str, recovered: str) -> None:
    """The one way a data check reports on a date: while ``failing``, an incident (one message,
    later dates folded into its digest); once fine again, a recovery (``settle``) if one is open."""
    if failing:
        incident(key, problem, when=when)
    elif key in open_incidents():
        settle(key, when, recovered)


def _digest(closed: dict) -> str:
    dates = sorted(closed["dates"])
    return (f" Failed {closed['count']} time(s) since {closed['opened']}"
            + (f" for {len(dates)} date(s): {_span(dates)}." if dates else "."))


def _span(dates: list[str]) -> str:
    return ", ".join(dates) if len(dates) <= 5 else f"{dates[0]} .. {dates[-1]} ({', '.join(dates[:3])}, ...)"


# ----------------------------------------------------------------------------- Airflow callbacks
def _logical(context: dict) -> str:
    value = context.get("logical_date")
    return value.date().isoformat() if hasattr(value, "date") else str(value or context.get("run_id", "?"))


def _dag_id(context: dict) -> str:
    return context["dag"].dag_id if context.get("dag") else "?"


def _is_quality_gate(exc: BaseException | None) -> bool:
    """A blocking quality gate, possibly wrapped (``AirflowFailException`` from ``QualityGateError``)."""
    seen = 0
    while exc is not None and seen < 5:  # by name: importing silver here would pull in polars
        if type(exc).__name__ == "QualityGateError":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def on_task_failure(context: dict) -> None:
    """A task failed after its last retry: open (or extend) its incident."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id, task_id = _dag_id(context), getattr(ti, "task_id", "?")
    exc = context.get("exception")
    err = str(exc or "")[:ERROR_EXCERPT_CHARS]
    try:
        link = ti.log_url
    except Exception:
        link = None
    headline = (f":no_entry: quality gate blocked *{dag_id}.{task_id}* for {_logical(context)}: "
                "the batch was not published and nothing downstream ran"
                if _is_quality_gate(exc if isinstance(exc, BaseException) else None)
                else f":red_circle: *{dag_id}.{task_id}* failed for {_logical(context)}")
    text = (f"{headline} (try {getattr(ti, 'try_number', '?')})\n```{err}```"
            + (f"\n<{link}|log>" if link else ""))
    incident(f"task:{dag_id}.{task_id}", text, when=_logical(context))


def on_task_success(context: dict) -> None:
    """A task succeeded: if it had an open incident, close it with a recovery message."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id, task_id = _dag_id(context), getattr(ti, "task_id", "?")
    key = f"task:{dag_id}.{task_id}"
    if key in open_incidents():  # a read without the lock first: most successes have nothing to close
        settle(key, _logical(context),
               f":white_check_mark: *{dag_id}.{task_id}* succeeded again for {_logical(context)}.")


def on_dag_failure(context: dict) -> None:
    """A DAG run failed; silent when a task incident of that DAG already told on-call."""
    dag_id = _dag_id(context)
    told = any(k.startswith(f"task:{dag_id}.") for k in open_incidents())
    text = f":rotating_light: DAG run *{dag_id}* failed for {_logical(context)}"
    if told:  # folded into the task's incident: opened silently, closed silently
        _update(lambda incidents: incidents.setdefault(f"dag:{dag_id}", {
            "opened": datetime.now(UTC).isoformat(timespec="seconds"), "count": 0, "dates": [], "text": text,
            "silent": True}))
    incident(f"dag:{dag_id}", text, when=_logical(context))


def on_dag_success(context: dict) -> None:
    dag_id = _dag_id(context)
    if f"dag:{dag_id}" in open_incidents():
        settle(f"dag:{dag_id}", _logical(context),
               f":white_check_mark: DAG *{dag_id}* succeeded again for {_logical(context)}.")


def notify(text: str, key: str | None = None) -> None:
    """A data alert (drift, degraded accuracy): deduplicated by ``key`` when given; never raises."""
    try:
        if key is None:
            send(text)
        else:
            incident(key, text)
    except Exception:
        log.exception("could not record an alert")
