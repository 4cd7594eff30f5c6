"""TPC-H as a second domain, daily (an Airflow DAG). Everything it does is configured in configs/tpch/."""

import os
from pathlib import Path

from lakehouse.dag_factory import build_dag

CONFIG_DIR = os.environ.get("TPCH_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / "configs" / "tpch"))

dag = build_dag(CONFIG_DIR)
