"""Star catalogs as Parquet: one explicit schema per table, validated on read (docs/method.md §8).

A catalog is a pandas DataFrame with one row per star. `image_id` is the row of the image cube
the star belongs to; images with no star have no rows. Coordinates are pixels in the frame of
docs/method.md §2 (pixel centres at half-integers), fluxes are counts.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from coaddbliss.errors import InputError
from coaddbliss.parquet import read_provenance, read_table, write_table
from coaddbliss.units import flux_to_mag

#: The truth catalog of a split: what the simulator drew.
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.int64(), nullable=False),  # row of the image cube
        pa.field("x", pa.float64(), nullable=False),  # column coordinate, pixels
        pa.field("y", pa.float64(), nullable=False),  # row coordinate, pixels
        pa.field("flux", pa.float64(), nullable=False),  # total flux, counts
        pa.field("mag", pa.float64(), nullable=False),  # magnitude (docs/method.md §2)
    ]
)

#: A predicted catalog (encoder or baseline): truth columns plus the posterior's scales.
PREDICTED_SCHEMA = pa.schema(
    list(TRUTH_SCHEMA)
    + [
        pa.field("prob", pa.float64(), nullable=False),  # q(n = 1) of the detection's tile, or
        # the chance that the detection is a star (a calibrated catalog: OPTIONAL_FIELDS)
        pa.field("x_sd", pa.float64(), nullable=True),  # posterior sd of x, pixels (NaN: unknown)
        pa.field("y_sd", pa.float64(), nullable=True),  # posterior sd of y, pixels (NaN: unknown)
        pa.field(
            "log_flux_sd", pa.float64(), nullable=True
        ),  # posterior sd of ln(flux) (NaN: unknown)
    ]
)

SCHEMAS = {"truth": TRUTH_SCHEMA, "predicted": PREDICTED_SCHEMA}
#: Columns a predicted catalog may add to its schema, written when the DataFrame has them.
OPTIONAL_FIELDS = {
    "predicted": [
        pa.field("detection_pass", pa.int64(), nullable=False),  # 1: the image itself; 2, 3,
        # ...: a residual pass of the encoder (coaddbliss.residual_passes)
        pa.field("prob_raw", pa.float64(), nullable=False),  # q(n = 1) the detection was cut
        # on, when `prob` is calibrated (coaddbliss.calibration)
    ],
}
#: Columns that may hold NaN (a baseline cannot always fill the posterior scales).
NULLABLE_COLUMNS = {"x_sd", "y_sd", "log_flux_sd"}


class CatalogError(InputError):
    """A catalog file is missing, unreadable or breaks its schema; the message names the file."""


def empty_catalog(kind: str = "truth") -> pd.DataFrame:
    """An empty DataFrame with the columns and dtypes of `kind` ('truth' or 'predicted')."""
    return SCHEMAS[kind].empty_table().to_pandas()


def write_catalog(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    kind: str = "truth",
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write `df` as Parquet with the `kind` schema and provenance in the file metadata.

    `mag` is recomputed from `flux` so that the two never disagree. The `kind`'s optional
    columns (OPTIONAL_FIELDS) are written when `df` has them. The write is atomic.
    """
    optional = [f for f in OPTIONAL_FIELDS.get(kind, []) if f.name in df.columns]
    schema = pa.schema(list(SCHEMAS[kind]) + optional)
    df = df.copy()
    df["mag"] = flux_to_mag(df["flux"].to_numpy()) if len(df) else np.array([], dtype=float)
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise CatalogError(f"{path}: cannot write a {kind} catalog without columns {missing}")
    write_table(df, path, schema, {"kind": kind, **(metadata or {})})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance dictionary stored by `write_catalog`."""
    return read_provenance(path, error=CatalogError)


#: How far a stored `mag` may stray from flux_to_mag(flux): float64 round-off, not a bin edge.
MAG_TOLERANCE = 1e-6
#: Columns that must be finite, and those (posterior sds) that may be NaN but never < 0 or inf.
FINITE_COLUMNS = ("x", "y", "flux", "mag")
SD_COLUMNS = ("x_sd", "y_sd", "log_flux_sd")


def _check_image_ids(path, ids: pd.Series) -> np.ndarray:
    """`image_id` as int64; integer values only (a cast would truncate 1.5 or read True as 1)."""
    if pd.api.types.is_bool_dtype(ids):
        raise CatalogError(f"{path}: column 'image_id' is boolean, not integer image rows")
    values = ids.to_numpy()
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise CatalogError(
                f"{path}: column 'image_id' has {int(bad.sum())} non-integer value(s) "
                f"(first: {values[bad][0]})"
            )
    return values.astype(np.int64)


def _count_bad(path, df: pd.DataFrame, name: str, bad: np.ndarray, what: str) -> None:
    if bad.any():
        first = df[name].to_numpy()[bad][0]
        raise CatalogError(
            f"{path}: column {name!r} has {int(bad.sum())} value(s) {what} (first: {first})"
        )


def read_catalog(
    path: str | os.PathLike, *, kind: str = "truth", n_images: int | None = None
) -> pd.DataFrame:
    """Read and validate a catalog; raise `CatalogError` naming the file, the column, the problem.

    Checks: the file exists and is Parquet; every column of the `kind` schema is present and
    numeric; no NaN outside the posterior-scale columns; `image_id` integer-valued and in
    [0, n_images) when `n_images` (the cube's N) is given; x, y, flux, mag finite; flux > 0;
    mag = flux_to_mag(flux) (scoring bins by the stored mag); prob in [0, 1]; sds NaN
    (unknown) or finite and >= 0.
    """
    schema = SCHEMAS[kind]
    df = read_table(path, schema, what=f"{kind} catalog", error=CatalogError)
    for name in schema.names:
        if not pd.api.types.is_numeric_dtype(df[name]):
            raise CatalogError(f"{path}: column {name!r} is {df[name].dtype}, not numeric")
        if name not in NULLABLE_COLUMNS and df[name].isna().any():
            bad = int(df[name].isna().sum())
            raise CatalogError(f"{path}: column {name!r} has {bad} NaN value(s)")
    ids = _check_image_ids(path, df["image_id"])
    if len(ids) and ids.min() < 0:
        raise CatalogError(f"{path}: negative image_id {ids.min()}")
    if n_images is not None and len(ids) and ids.max() >= n_images:
        raise CatalogError(
            f"{path}: image_id {ids.max()} is outside the image cube (N = {n_images} images)"
        )
    for name in FINITE_COLUMNS:
        _count_bad(path, df, name, ~np.isfinite(df[name].to_numpy(np.float64)), "not finite")
    flux = df["flux"].to_numpy(np.float64)
    _count_bad(path, df, "flux", flux <= 0, "not positive")
    off = np.abs(df["mag"].to_numpy(np.float64) - flux_to_mag(flux))
    what = f"off flux_to_mag(flux) (docs/method.md §2) by up to {off.max(initial=0):.3g} mag"
    _count_bad(path, df, "mag", off > MAG_TOLERANCE, what)
    if "prob" in schema.names:
        prob = df["prob"].to_numpy(np.float64)
        _count_bad(path, df, "prob", (prob < 0) | (prob > 1), "outside [0, 1]")
    for name in (c for c in SD_COLUMNS if c in schema.names):
        sd = df[name].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            _count_bad(path, df, name, (sd < 0) | np.isinf(sd), "negative or infinite")
    df = df[list(schema.names) + [c for c in df.columns if c not in schema.names]]
    df["image_id"] = ids
    return df
