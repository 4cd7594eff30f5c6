"""Storage faults: a failing fsync or rename leaves the previous version intact, visible and
alone, and the error says what failed (injected into the real publish path)."""

from __future__ import annotations

import errno
import os

import polars as pl
import pytest

from lakehouse import storage

PART = {"day": "2026-01-01"}


def _hidden(tmp_path):
    return [p for p in tmp_path.rglob(".*") if p.is_file()]


# The file-per-partition protocol (bronze). Delta tables (silver, gold) commit in delta-rs' own
# code, which Python can't inject into: their atomicity is proven by kill -9 (test_atomicity).
@pytest.mark.parametrize("fault", ["fsync", "rename", "disk_full"])
def test_a_failing_publish_keeps_the_previous_version(tmp_path, monkeypatch, fault):
    storage.publish(pl.DataFrame({"v": [1, 2, 3]}), tmp_path, "bronze", "t", PART)
    before = storage.content_hash(tmp_path, "bronze", "t")

    def broken(*args, **kwargs):
        raise OSError(errno.EIO if fault != "disk_full" else errno.ENOSPC, f"injected {fault} failure")

    if fault == "fsync":
        monkeypatch.setattr(os, "fsync", broken)
    elif fault == "rename":
        monkeypatch.setattr(os, "replace", broken)
    new = pl.DataFrame({"v": list(range(1000))})
    with pytest.raises(OSError, match=f"injected {fault} failure" if fault != "disk_full" else "No space|injected"):
        if fault == "disk_full":  # the writer itself fails half way through the file
            def batches():
                yield new
                broken()
            storage.publish_batches(batches(), tmp_path, "bronze", "t", PART)
        else:
            storage.publish(new, tmp_path, "bronze", "t", PART)
    monkeypatch.undo()
    assert storage.content_hash(tmp_path, "bronze", "t") == before
    assert storage.scan(tmp_path, "bronze", "t").select(pl.len()).collect().item() == 3
    assert _hidden(tmp_path) == []  # no temp file left next to the data
    # the next publish works as if nothing happened
    storage.publish(new, tmp_path, "bronze", "t", PART)
    assert storage.row_count(tmp_path, "bronze", "t") == 1000
