"""Airflow's Celery configuration with the data libraries preloaded in each worker (ADR 0029).

``[celery] celery_config_options`` names ``CELERY_CONFIG``: Airflow's default configuration
plus Celery's ``imports``, the modules a worker imports when it starts, before it forks its
pool processes. Each task process is forked from a pool process (Airflow's supervisor), so it
inherits the libraries instead of importing them itself.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from lakehouse.airflow_env import DATA_LIBRARIES

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG,
                 "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), *DATA_LIBRARIES]}
