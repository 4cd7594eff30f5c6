"""PII columns are tokenised in silver with a keyed HMAC (docs/SECURITY.md, ADR 0014).

A contract marks a column ``pii: true``; silver (and the quarantine's kept records) hold
``pii_<hmac-sha256(key, value)[:32]>`` instead of the value. The token is deterministic for
one key, so joins, distinct counts and SCD2 change detection work on tokens as on values;
without the key the value can't be recovered or confirmed by guessing. Bronze keeps what the
source delivered (raw and immutable, and expired by retention).

The key comes from ``LAKEHOUSE_PII_KEY`` (set it from the cloud's secret manager in
production). A local home without it gets a random key generated once in
``$LAKEHOUSE_HOME/.secrets/pii.key`` (mode 0600, git-ignored), so the embedded demo runs
with nothing to configure; losing that file changes every token of a rebuilt lake.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import polars as pl

PREFIX = "pii_"
_MIN_KEY_BYTES = 16


class PiiKeyError(RuntimeError):
    """No usable key: refusing to write PII in clear."""


def key() -> bytes:
    """The tokenisation key: ``LAKEHOUSE_PII_KEY``, else this home's generated key file."""
    value = os.environ.get("LAKEHOUSE_PII_KEY")
    if value is None:
        path = Path(os.environ.get("LAKEHOUSE_HOME", ".")) / ".secrets" / "pii.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".pii.key.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:  # link, not rename: of two tasks generating at once, the first key wins for both
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        value = path.read_text().strip()
    if len(value.encode()) < _MIN_KEY_BYTES:
        raise PiiKeyError(f"LAKEHOUSE_PII_KEY must hold at least {_MIN_KEY_BYTES} bytes "
                          f"(got {len(value.encode())}); generate one with "
                          "python -c 'import secrets; print(secrets.token_hex(32))'")
    return value.encode()


def token(value: str, secret: bytes) -> str:
    return PREFIX + hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def tokenise(frame: pl.DataFrame, columns: list[str], secret: bytes | None = None) -> pl.DataFrame:
    """Replace every non-null value of ``columns`` by its token (nulls stay null)."""
    columns = [c for c in columns if c in frame.columns]
    if not columns or frame.is_empty():
        return frame
    secret = key() if secret is None else secret
    out = []
    for name in columns:
        values = frame[name].cast(pl.String)
        uniques = values.drop_nulls().unique()
        mapping = {v: token(v, secret) for v in uniques.to_list()}
        out.append(values.replace_strict(mapping, default=None, return_dtype=pl.String).alias(name))
    return frame.with_columns(out)
