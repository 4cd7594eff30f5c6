"""File drops (CSV, .xlsx) picked up by arrival time, each processed exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from lakehouse.config import FileSource
from lakehouse.extract.base import Extracted, Window
from lakehouse.storage import file_digest


class FileError(ValueError):
    """A dropped file cannot be read; the message names the file."""


def _check_complete(path: Path) -> None:
    """A CSV whose last record has no line end was cut off in transfer (Polars would pad it)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            raise FileError(f"{path}: empty file (0 bytes; a file with no rows still has its header)")
        fh.seek(-1, 2)
        if fh.read(1) != b"\n":
            raise FileError(f"{path}: truncated: the last record has no line end (was the upload cut off?)")


def read_raw(path: Path) -> pl.DataFrame:
    """Read a dropped file as text columns exactly as sent (typing happens in silver).

    Unreadable, empty, truncated or wrongly encoded files raise ``FileError`` naming the
    file: a tier-1 failure, the day's batch of the source is not published.
    """
    try:
        if path.suffix == ".csv":
            _check_complete(path)
            return pl.read_csv(path, infer_schema=False)
        if path.suffix == ".xlsx":
            frame = pl.read_excel(path, engine="calamine", infer_schema_length=0)
            return frame.with_columns(pl.all().cast(pl.String))
    except FileError:
        raise
    except Exception as exc:  # the reader's own exception types vary by engine
        raise FileError(f"{path}: cannot be read as {path.suffix}: {exc}") from exc
    raise FileError(f"{path}: unsupported file type {path.suffix!r}")


BATCH_BYTES = 128 << 20  # CSV files larger than this are read in batches
BATCH_ROWS = 1_000_000


def read_raw_batches(path: Path, rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """``read_raw`` in batches of at most ``rows`` rows, in file order, for large CSV files.

    A snapshot of a big table (TPC-H partsupp at SF10 is 1.2 GB of CSV) would otherwise sit
    in memory whole, as text, while it is hashed and written. Small files and Excel
    workbooks come back as one frame; errors name the file either way.
    """
    if path.suffix != ".csv" or path.stat().st_size <= BATCH_BYTES:
        yield read_raw(path)
        return
    _check_complete(path)
    batches = iter(pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=rows, maintain_order=True))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # the reader's own exception types vary
            raise FileError(f"{path}: cannot be read as .csv: {exc}") from exc
        yield batch


class FileExtractor:
    """Selects files by arrival (modification time) and skips those already processed.

    ``registry`` maps file name -> {"sha256", "ingest_date"}. A run takes every file
    that arrived before its window's end and was not processed by another run, so a
    file is processed exactly once, and one that a missed run never saw is swept up
    by the next. A re-dropped file with new content is a new version and is taken again.
    A rerun of the same ingest date takes the same files again.

    A file that cannot be read (empty, cut off, wrong encoding, a corrupt workbook) is *set
    aside* under the source's ``on_unreadable_file: set_aside`` (the default): it lands in
    ``set_aside`` with its reason, none of its rows are extracted, and the other files go on.
    Under ``fail`` it raises ``FileError`` and the source's batch is not published. A CSV
    larger than ``BATCH_BYTES`` that breaks after its first batch always raises: its first
    rows are already on their way to bronze, and a half-read file must not be published.
    After ``candidates``, ``left_for_later`` names the unprocessed files that arrived after
    the window's end (a later day's run takes them).
    """

    def __init__(self, source: FileSource, registry: dict[str, dict] | None = None,
                 ingest_date: str | None = None) -> None:
        self.source = source
        self.name = source.name
        self.registry = registry or {}
        self.ingest_date = ingest_date
        self.set_aside: list[dict] = []
        self.left_for_later: list[dict] = []

    def candidates(self, window: Window) -> list[tuple[Path, str]]:
        landing = Path(self.source.landing_dir)
        paths = sorted({p for pat in self.source.patterns for p in landing.glob(pat)})
        chosen, self.left_for_later = [], []
        for path in paths:
            arrived = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)
            seen = self.registry.get(path.name)
            if arrived >= window.end:
                if seen is None:
                    self.left_for_later.append({"name": path.name, "arrived_utc": arrived.isoformat(),
                                                "window_end_utc": window.end.isoformat()})
                continue
            digest = file_digest(path)
            if seen and seen["sha256"] == digest and seen["ingest_date"] != self.ingest_date:
                continue
            chosen.append((path, digest))
        return chosen

    def extract(self, window: Window) -> Iterator[Extracted]:
        files = self.candidates(window)
        self.set_aside = []
        for path, digest in files:
            row = 2  # line 1 is the header
            batches = read_raw_batches(path)
            try:
                batch = next(batches)
            except FileError as exc:
                if self.source.on_unreadable_file == "fail":
                    raise
                self.set_aside.append({"name": path.name, "path": str(path), "sha256": digest,
                                       "ingest_date": self.ingest_date, "reason": str(exc)})
                continue
            while batch is not None:
                following = next(batches, None)
                frame = batch.with_row_index("_row", offset=row)
                row += batch.height
                yield Extracted(
                    self.source.entity, frame,
                    pl.format(f"{path.name}#row={{}}", pl.col("_row")),
                    # consumed once its last batch is out
                    files=[] if following is not None else
                    [{"name": path.name, "sha256": digest, "ingest_date": self.ingest_date}],
                )
                batch = following
        if len(self.set_aside) == len(files):  # no file gave rows: an empty batch, so silver still runs
            yield Extracted(self.source.entity, pl.DataFrame(), pl.lit(None, pl.String))
