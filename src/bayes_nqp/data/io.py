"""Readers for the panel formats users bring: CSV, Parquet, Stata .dta, Excel."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..errors import DataError

_READERS = {
    ".csv": pd.read_csv,
    ".txt": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".dta": pd.read_stata,
    ".xlsx": pd.read_excel,
    ".xls": pd.read_excel,
}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a data file by its extension."""
    if not isinstance(path, (str, Path)):
        raise DataError(f"a data file is a path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; --data needs a file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"{path}: unknown file type '{path.suffix}'; use one of "
            f"{', '.join(sorted(_READERS))}"
        )
    try:
        return reader(path)
    except Exception as exc:  # library readers raise many types; the user needs one message
        raise DataError(f"{path}: could not be read as {path.suffix} ({exc})") from exc


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
