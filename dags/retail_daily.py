"""The retail lakehouse, daily (an Airflow DAG). Everything it does is configured in configs/retail/."""

import os
from pathlib import Path

from lakehouse.dag_factory import build_dag

CONFIG_DIR = os.environ.get("RETAIL_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / "configs" / "retail"))

dag = build_dag(CONFIG_DIR)
