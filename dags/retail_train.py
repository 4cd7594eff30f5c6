"""Retail demand model training (an Airflow DAG): weekly, and once after a backfill. Configured in configs/retail/."""

import os
from pathlib import Path

from lakehouse.dag_factory import build_training_dag

CONFIG_DIR = os.environ.get("RETAIL_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / "configs" / "retail"))

dag = build_training_dag(CONFIG_DIR)
