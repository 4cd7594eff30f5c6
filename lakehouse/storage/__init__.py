"""The one I/O module of the lake: where tables live, how they are published, read and kept.

Everything else reads and writes through ``lakehouse.storage`` (``storage.publish``,
``storage.scan``, ...), so paths, atomic publishing, object storage and fencing are solved once.
Its parts, one job each:

* ``paths``: layer, table, partition and state locations; names validated.
* ``files``: file primitives on local disk or an object store (the backend follows the path).
* ``table_io``: publish, read, scan and list tables of any layer. Silver and gold are Delta
  tables (ADR 0019): every change is one Delta commit through ``lakehouse.delta``.
* ``partition_files``: bronze's one-Parquet-file-per-partition protocol (ADR 0001, 0013),
  until bronze moves to Delta; ``snapshots``: hard-linked read snapshots for it.
* ``maintenance``: vacuum and compaction; ``scratch``: private local spill folders;
  ``hashing``: content hashes for comparing lakes.
* ``locks``: the inter-process lock; ``fencing``: a superseded task attempt publishes nothing
  (ADR 0016).

The lake root may be a local path or an object-store URI (``s3://``, ``gs://``, ``abfs://``;
ADR 0013). Credentials and endpoints come from each cloud's standard environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), read by fsspec, Polars and delta-rs alike.
"""

from __future__ import annotations

from lakehouse.storage.fencing import (  # noqa: F401 - the package's interface
    StaleAttempt,
    claim_attempt,
    release_attempt,
)
from lakehouse.storage.files import (  # noqa: F401 - the package's interface
    file_digest,
    file_rows,
    file_schema,
    filesystem,
    find,
    get_file,
    modified_time,
    path_exists,
    put_file,
    read_batches,
    read_json,
    remove,
    write_json,
)
from lakehouse.storage.hashing import (  # noqa: F401 - the package's interface
    VOLATILE_COLUMNS,
    content_hash,
    frame_hash,
    layer_hashes,
)
from lakehouse.storage.locks import (  # noqa: F401 - the package's interface
    locked,
)
from lakehouse.storage.maintenance import (  # noqa: F401 - the package's interface
    COMPACT_BYTES,
    SMALL_FILE_BYTES,
    SMALL_FILES,
    compact_small_files,
    optimize_all,
    vacuum,
)
from lakehouse.storage.partition_files import (  # noqa: F401 - the package's interface
    RETIRED,
    data_file,
    hive_values,
    retire,
)
from lakehouse.storage.paths import (  # noqa: F401 - the package's interface
    DATA_FILE,
    LAYERS,
    Location,
    StorageError,
    is_remote,
    join,
    lake_path,
    layer_root,
    partition_dir,
    state_dir,
    state_path,
    table_dir,
)
from lakehouse.storage.scratch import (  # noqa: F401 - the package's interface
    scratch_dir,
    spill_buckets,
)
from lakehouse.storage.snapshots import (  # noqa: F401 - the package's interface
    SNAPSHOT_REUSE_S,
    SNAPSHOTS,
)
from lakehouse.storage.table_io import (  # noqa: F401 - the package's interface
    DELTA_LAYERS,
    codec,
    data_files,
    delta_tables,
    drop_partition,
    empty_frame,
    exists,
    partition_rows,
    partitions,
    publish,
    publish_batches,
    publish_partitioned,
    publish_table,
    read,
    row_count,
    scan,
    scan_partition,
    table_source,
    tables,
)
