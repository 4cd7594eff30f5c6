"""Secrets in the environment are masked in every task log (docs/SECURITY.md).

Airflow masks connection passwords and Variables with sensitive names by itself; secrets
passed as environment variables (the Slack webhook, database URLs with a password, cloud
keys, the PII key) are not known to it, so each task registers them with Airflow's own
secrets masker before it runs (``on_execute_callback``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

# the names Airflow itself treats as sensitive, plus what this project reads
_SENSITIVE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|_KEY|WEBHOOK|PRIVATE|CREDENTIAL|API_KEY)", re.I)
_URL_VARS = re.compile(r"(_URL|_URI|_CONN|_DSN)$", re.I)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never appear in a log: sensitive variables whole, and the password
    part of any URL-valued variable (``postgresql://user:pw@host/db``)."""
    environ = os.environ if environ is None else environ
    found = []
    for name, value in environ.items():
        if not value or len(value) < 6:
            continue  # too short to mask without masking ordinary words
        if _SENSITIVE.search(name):
            found.append(value)
        if _URL_VARS.search(name) and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password and len(password) >= 4:
                found.append(password)
    return sorted(set(found))


def mask_environment(context: object = None) -> int:
    """Register every environment secret with Airflow's masker; returns how many."""
    from airflow.sdk.log import mask_secret

    values = secret_values()
    for value in values:
        mask_secret(value)  # the Task SDK's masker: what real task runs (and their supervisor) log through
    try:  # the masker of in-process runs (`airflow dags test`), a separate instance in airflow-core
        from airflow._shared.secrets_masker import mask_secret as mask_in_core
    except ImportError:  # a worker with the Task SDK only
        return len(values)
    for value in values:
        mask_in_core(value)
    return len(values)
