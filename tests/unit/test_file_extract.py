"""Large CSV drops are read in batches: same rows, same line pointers, the file registered once."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from lakehouse.config import FileSource
from lakehouse.extract import files
from lakehouse.extract.base import Window


def _extract(landing, on_unreadable_file: str = "set_aside") -> tuple[pl.DataFrame, list[dict], int]:
    source = FileSource(kind="files", name="drop", entity="items", landing_dir=str(landing),
                        on_unreadable_file=on_unreadable_file)
    chunks = list(files.FileExtractor(source, ingest_date="2026-01-02").extract(Window(None, datetime(2100, 1, 1))))
    frame = pl.concat([c.frame.with_columns(_pointer=c.pointer).drop("_row") for c in chunks])
    return frame, [f for c in chunks for f in c.files], len(chunks)


def test_a_large_csv_is_read_in_batches_with_the_same_rows_and_pointers(tmp_path, monkeypatch):
    rows = 2_345
    (tmp_path / "items.csv").write_text(
        "id,name,price\n" + "".join(f'{i},"item, no. {i}",{i / 10}\n' for i in range(rows)))
    whole, whole_files, _ = _extract(tmp_path)
    monkeypatch.setattr(files, "BATCH_BYTES", 0)
    monkeypatch.setattr(files, "BATCH_ROWS", 500)
    calls = []
    real = files.read_raw_batches
    monkeypatch.setattr(files, "read_raw_batches", lambda path: calls.append(path) or real(path, rows=500))
    batched, batched_files, chunks = _extract(tmp_path)
    assert calls and chunks >= 4 and whole.height == rows
    assert batched.equals(whole)  # values as sent, in file order
    assert batched["_pointer"][0] == "items.csv#row=2" and batched["_pointer"][-1] == f"items.csv#row={rows + 1}"
    assert batched_files == whole_files and len(batched_files) == 1  # registered once, by its last batch


def test_a_truncated_large_csv_is_refused_naming_the_file(tmp_path, monkeypatch):
    (tmp_path / "items.csv").write_text("id,name\n1,a\n2,b")  # no line end: cut off in transfer
    (tmp_path / "other.csv").write_text("id,name\n3,c\n")
    monkeypatch.setattr(files, "BATCH_BYTES", 0)
    with pytest.raises(files.FileError, match=r"items\.csv: truncated"):
        _extract(tmp_path, "fail")
    # set aside (the default): none of its rows, the other file whole, the reason kept
    source = FileSource(kind="files", name="drop", entity="items", landing_dir=str(tmp_path))
    extractor = files.FileExtractor(source, ingest_date="2026-01-02")
    chunks = list(extractor.extract(Window(None, datetime(2100, 1, 1))))
    assert [c.frame["id"].to_list() for c in chunks] == [["3"]]
    assert [f["name"] for c in chunks for f in c.files] == ["other.csv"]
    [aside] = extractor.set_aside
    assert aside["name"] == "items.csv" and "truncated" in aside["reason"]
