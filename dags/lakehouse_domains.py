"""Every domain's DAGs, from configuration alone (an Airflow DAG file).

Each folder with a domain.yaml under configs/ (or on $LAKEHOUSE_DOMAIN_PATH) gets its daily
DAG, and its training DAG when it configures a model: adding a domain adds no Python.
"""

from lakehouse.dag_factory import domain_dags

globals().update(domain_dags())
