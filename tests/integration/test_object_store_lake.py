"""The lake on object storage: an S3 server on loopback (moto's server mode), reached by
the real clients (Polars' object_store, s3fs/botocore, DuckDB through fsspec), ADR 0013.

No mocks of the clients: the server speaks the S3 REST protocol over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from lakehouse import catalog, storage
from tests.conftest import START, comparable_hashes, free_port, missing, run_day_direct

BUCKET = "lakehouse-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the AWS variables every client reads."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing("moto[server] is not installed (make setup installs the dev group)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto's S3 server did not start on {endpoint}")
            time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage._filesystem.cache_clear()
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = storage.filesystem(f"s3://{BUCKET}")
    for bucket in (BUCKET, *(f"{BUCKET}-{layer}" for layer in ("bronze", "silver", "gold"))):
        fs.mkdir(bucket)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        storage._filesystem.cache_clear()
        s3fs.S3FileSystem.clear_instance_cache()


def test_the_pipeline_on_s3_equals_the_pipeline_on_local_disk(tiny, s3_endpoint, tmp_path):
    """Same sources, same days: every bronze, silver and gold table hashes equal, the
    catalog's views read the buckets, and nothing but data files and state is in them.

    The lake has one bucket per layer, as Terraform provisions it (``{layer}`` in the root)."""
    local = tiny.cfg
    remote = local.model_copy(update={"lake_root": f"s3://{BUCKET}-{{layer}}/retail",
                                      "catalog_path": str(tmp_path / "s3_catalog.duckdb")})
    for i in range(2):
        day = START + timedelta(days=i)
        tiny.advance(day)
        run_day_direct(local, day)
        run_day_direct(remote, day)

    local_hashes, remote_hashes = comparable_hashes(local.lake), comparable_hashes(remote.lake)
    assert {k for k in local_hashes if k.startswith("gold.fct_")} >= {"gold.fct_order_lines"}
    assert remote_hashes == local_hashes

    fs = storage.filesystem(remote.lake)
    keys = [k for layer in ("bronze", "silver", "gold") for k in fs.find(f"{BUCKET}-{layer}/retail")]
    assert fs.find(f"{BUCKET}-gold/retail/_state/watermarks"), "state lives in the gold bucket"
    assert sum("-gold/retail/fct_order_lines/order_date=" in k for k in keys) == \
        len(storage.partitions(local.lake, "gold", "fct_order_lines")) > 1
    # no temp file or half-written object left behind: only data files and small state documents
    assert all(k.endswith(("/data.parquet", ".json")) or "/.retired-" in k for k in keys), \
        [k for k in keys if not k.endswith(("/data.parquet", ".json"))][:5]

    with catalog.connect_read_only(remote) as con:
        lines_s3 = con.execute("SELECT count(*), round(sum(net_amount), 4) FROM gold.fct_order_lines").fetchone()
    with catalog.connect_read_only(local) as con:
        lines_local = con.execute("SELECT count(*), round(sum(net_amount), 4) FROM gold.fct_order_lines").fetchone()
    assert lines_s3 == lines_local and lines_s3[0] > 0

    # rerunning a day on the bucket changes nothing (idempotent, as on disk)
    run_day_direct(remote, START + timedelta(days=1))
    assert comparable_hashes(remote.lake) == remote_hashes
