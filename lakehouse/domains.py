"""Where domains live: every folder holding a ``domain.yaml``, on a search path.

The path is ``$LAKEHOUSE_DOMAIN_PATH`` (folders separated by ``os.pathsep``, like ``PATH``),
else the project's ``configs/``. Each entry is a domain folder itself or a folder of domain
folders; the first folder of a name wins, as on ``PATH``. The DAG file, the CLI and the
tests all find domains here, so adding a domain is adding a folder: no Python, no list to edit.
Only the file system is read (no YAML): DAG parsing pays for the domains it builds, no more.
"""

from __future__ import annotations

import os
from pathlib import Path

from lakehouse.airflow_env import PROJECT

PATH_VARIABLE = "LAKEHOUSE_DOMAIN_PATH"
MARKER = "domain.yaml"


def search_path() -> list[Path]:
    """The folders searched for domains, in order."""
    given = os.environ.get(PATH_VARIABLE, "")
    entries = [Path(p).expanduser() for p in given.split(os.pathsep) if p.strip()]
    return entries or [PROJECT / "configs"]


def discover(path: list[Path] | None = None) -> dict[str, Path]:
    """``{folder name: folder}`` of every domain on the search path, sorted by name."""
    found: dict[str, Path] = {}
    for entry in path if path is not None else search_path():
        if (entry / MARKER).is_file():
            candidates = [entry]
        elif entry.is_dir():
            candidates = sorted(d for d in entry.iterdir() if (d / MARKER).is_file())
        else:
            candidates = []
        for folder in candidates:
            found.setdefault(folder.name, folder.resolve())
    return dict(sorted(found.items()))


def find(domain: str) -> Path | None:
    """The folder of ``domain`` on the search path, or None."""
    return discover().get(domain)
