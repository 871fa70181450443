"""Parquet tables: one writer that attaches provenance, one reader that checks the columns."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from coaddbliss import __version__
from coaddbliss.atomic import atomic_path
from coaddbliss.errors import InputError

#: File-metadata key of the provenance (JSON: package version plus the writer's config slice).
METADATA_KEY = b"coaddbliss"


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike,
    schema: pa.Schema,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write `df` with `schema`'s columns and types and provenance in the metadata, atomically."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    provenance = {"version": __version__, **(metadata or {})}
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(provenance, default=str)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_provenance(
    path: str | os.PathLike, *, error: type[InputError] = InputError
) -> dict[str, Any]:
    """The provenance dictionary stored by `write_table` ({} when the file has none)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise error(f"{path}: not a readable Parquet table ({err})") from err
    return json.loads(meta.get(METADATA_KEY, b"{}"))


def read_table(
    path: str | os.PathLike,
    schema: pa.Schema,
    *,
    what: str = "table",
    error: type[InputError] = InputError,
) -> pd.DataFrame:
    """Read a Parquet file that must hold `schema`'s columns; `error` names the file if not."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        df = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise error(f"{path}: not a readable Parquet {what} ({err})") from err
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise error(f"{path}: {what} lacks columns {missing}")
    return df
