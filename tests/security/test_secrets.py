"""No secret in logs or in the repository (docs/SECURITY.md).

Masking in real task logs is checked on a real cluster, where tasks run under Airflow's
supervisor (tests/integration/test_backfill_postgres.py): ``airflow dags test`` runs tasks
in-process and masks nothing, so it cannot show it."""

from __future__ import annotations

import re
import subprocess
import textwrap

from lakehouse.airflow_env import PROJECT
from lakehouse.secrets import secret_values

LEAKY_DAG = textwrap.dedent('''
    import logging
    import os
    from datetime import datetime

    from airflow.sdk import DAG, task

    from lakehouse import secrets

    with DAG("leaky", start_date=datetime(2026, 1, 1), schedule=None,
             default_args={"on_execute_callback": secrets.mask_environment}):
        @task
        def careless():
            token = os.environ["SLACK_BOT_TOKEN"]
            log = logging.getLogger("careless")
            log.warning("calling Slack with %s", token)
            log.warning("erp is %s", os.environ["LEAKY_ERP_URL"])
            print("printed " + token)

        careless()
''')


def test_secret_values_cover_tokens_keys_and_url_passwords():
    # fakes assembled at run time, so the repository scan below has nothing to find here
    token, password = "-".join(["xoxb", "123456", "abcdef"]), "pa55" + "w0rd!"
    env = {"SLACK_BOT_TOKEN": token, "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
           "RETAIL_ERP_URL": f"postgresql+psycopg2://erp:{password}@db:5432/erp",
           "RETAIL_API_URL": "http://127.0.0.1:8765", "HOME": "/root", "LAKEHOUSE_PII_KEY": "k" * 32}
    assert secret_values(env) == sorted([token, "wJalrXUtnFEMI", password, "k" * 32])


# what a leaked credential looks like: provider token formats and private keys
SECRET_PATTERNS = {
    "slack token": r"xox[abprs]-[0-9A-Za-z-]{10,}",
    "slack webhook": r"hooks\.slack\.com/services/T[0-9A-Z]+/B[0-9A-Z]+/[0-9A-Za-z]{20,}",
    "aws access key": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "github token": r"\bgh[pousr]_[0-9A-Za-z]{36}\b",
    "password in a URL": r"://[A-Za-z0-9_.-]+:(?!\$?\{|\*\*\*|pass@|password@|pw@)[^@\s/'\"]{6,}@",
}


def test_the_repository_holds_no_secret():
    """Every tracked file is scanned for credential formats (tests build fake ones at run time)."""
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True)
    hits = []
    for name in files.stdout.split():
        path = PROJECT / name
        if not path.is_file() or path.suffix in {".png", ".parquet", ".xlsx", ".lock"}:
            continue
        text = path.read_text(errors="ignore")
        for kind, pattern in SECRET_PATTERNS.items():
            for match in re.finditer(pattern, text):
                hits.append(f"{name}: {kind}: {match.group(0)[:40]}")
    assert not hits, hits
    # and the scan itself finds a real-looking one
    sample = "token=xoxb-" + "1234567890-abcdefghij"
    assert re.search(SECRET_PATTERNS["slack token"], sample)
