"""One place for alerting: failure callbacks shared by every DAG through its default args.

Messages go to Slack through slack-sdk's ``WebhookClient`` when ``SLACK_WEBHOOK_URL``
is set (from the environment or an Airflow connection's secret backend); otherwise
they are logged. The webhook URL itself is never logged.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def _post(text: str) -> None:
    url = os.environ.get("SLACK_WEBHOOK_URL")
    if not url:
        log.warning("alert (no SLACK_WEBHOOK_URL set): %s", text)
        return
    from slack_sdk.webhook import WebhookClient

    resp = WebhookClient(url, timeout=10).send(text=text)
    if resp.status_code != 200:
        log.error("Slack answered HTTP %s to an alert", resp.status_code)


def notify(text: str) -> None:
    """A data alert (drift, degraded accuracy) outside of a task failure; never raises."""
    try:
        _post(text)
    except Exception:  # alerting must never fail the pipeline
        log.exception("could not deliver an alert")


def _describe(context: dict) -> str:
    ti = context.get("task_instance") or context.get("ti")
    dag_id = context["dag"].dag_id if context.get("dag") else "?"
    err = str(context.get("exception") or "")[:500]
    task = getattr(ti, "task_id", "?")
    tries = getattr(ti, "try_number", "?")
    return (f":red_circle: *{dag_id}.{task}* failed (try {tries}) for "
            f"{context.get('logical_date')}\n```{err}```")


def on_task_failure(context: dict) -> None:
    """Called once a task has failed for good (Airflow calls it after the last retry)."""
    _post(_describe(context))


def on_dag_failure(context: dict) -> None:
    dag_id = context["dag"].dag_id if context.get("dag") else "?"
    _post(f":rotating_light: DAG run *{dag_id}* failed for {context.get('logical_date')}")
