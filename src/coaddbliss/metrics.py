"""Scoring predicted catalogs against the truth (SPEC §6): matching, binned rates, bootstrap bands.

Everything is computed from per-image counts so that the bootstrap never re-matches: a replicate
is a vector of image multiplicities w (N,) drawn once per replicate (the same for every bin,
statistic, seed and depth, so replicates are paired), and a resampled sum is w @ counts.

Tables (tidy Parquet, one row per number):
- a run table (`RUN_SCHEMA`) per (method, d, seed): the point estimate (replicate -1) and every
  bootstrap replicate (0 .. R-1) of every statistic;
- the aggregate table (`METRICS_SCHEMA`): per seed, the point estimate with its bootstrap band,
  and per (method, d) the pooled row (seed = -1): the mean over seeds with the band taken from
  the pooled replicates of all seeds.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

from coaddbliss import __version__
from coaddbliss.atomic import atomic_path
from coaddbliss.images import read_cube_header

#: `seed` of the pooled rows of the aggregate table (mean over seeds, pooled bootstrap band).
POOLED_SEED = -1
#: `replicate` of the point estimate in a run table (bootstrap replicates are 0 .. R-1).
POINT_ESTIMATE = -1

#: Binned statistics (mag_lo/mag_hi set, nominal NaN).
BINNED_STATISTICS = (
    "recall",  # matched true stars / true stars, binned by true mag
    "precision",  # matched detections / detections, binned by estimated mag
    "flux_residual_median",  # median of (f_hat - f) / f over matched pairs, by true mag
    "flux_residual_q25",  # 25 % quantile of the same
    "flux_residual_q75",  # 75 % quantile of the same
    "n_true",  # true stars in the bin (resampled: a count)
    "n_detected",  # detections in the bin, by estimated mag
)
#: Calibration statistics (mag_lo/mag_hi NaN, nominal set).
CALIBRATION_STATISTICS = (
    "coverage_log_flux",  # fraction of matched stars whose ln f lies in the central interval
    "coverage_location",  # the same for x and y (each axis one event), Gaussian approximation
)

#: One run (method, d, seed): point estimates and bootstrap replicates.
RUN_SCHEMA = pa.schema(
    [
        pa.field("method", pa.string(), nullable=False),  # "encoder" or "sep"
        pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
        pa.field("seed", pa.int64(), nullable=False),  # training seed (sep: pseudo-seed 0)
        pa.field("statistic", pa.string(), nullable=False),  # see *_STATISTICS
        pa.field("mag_lo", pa.float64(), nullable=True),  # bin lower edge, mag (NaN: unbinned)
        pa.field("mag_hi", pa.float64(), nullable=True),  # bin upper edge, mag (exclusive)
        pa.field("nominal", pa.float64(), nullable=True),  # nominal coverage (NaN: not calibration)
        pa.field("replicate", pa.int64(), nullable=False),  # -1: point estimate; else bootstrap
        pa.field("value", pa.float64(), nullable=True),  # NaN: undefined (empty bin)
    ]
)

#: The aggregate table of every run: results/metrics/metrics.parquet.
METRICS_SCHEMA = pa.schema(
    [
        pa.field("method", pa.string(), nullable=False),
        pa.field("d", pa.int64(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),  # -1 (POOLED_SEED): mean over seeds
        pa.field("statistic", pa.string(), nullable=False),
        pa.field("mag_lo", pa.float64(), nullable=True),
        pa.field("mag_hi", pa.float64(), nullable=True),
        pa.field("nominal", pa.float64(), nullable=True),
        pa.field("value", pa.float64(), nullable=True),  # point estimate (pooled: seed mean)
        pa.field("lower", pa.float64(), nullable=True),  # band low quantile of the replicates
        pa.field("upper", pa.float64(), nullable=True),  # band high quantile of the replicates
        pa.field("n_seeds", pa.int64(), nullable=False),  # seeds behind the row
    ]
)
METADATA_KEY = b"coaddbliss"


class MetricsError(ValueError):
    """Inputs that cannot be scored; the message names the file and the problem."""


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` section of config.yaml."""

    mag_min: float = 20.0  # lower edge of the first magnitude bin
    mag_max: float = 23.0  # upper edge of the last bin (exclusive)
    mag_step: float = 0.2  # bin width, mag
    max_offset: float = 1.0  # a pair matches only if max(|dx|, |dy|) < this, pixels
    bootstrap_replicates: int = 200  # R: resamples of the test images
    bootstrap_seed: int = 0  # seeds the resampling (the same for every run: paired replicates)
    band: tuple[float, float] = (0.25, 0.75)  # quantiles of the replicates that bound the band
    coverage_levels: tuple[float, ...] = (0.5, 0.68, 0.8, 0.9, 0.95)  # nominal coverages

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> EvaluateConfig:
        """Build from config["evaluate"]."""
        return cls(
            mag_min=float(section["mag_min"]),
            mag_max=float(section["mag_max"]),
            mag_step=float(section["mag_step"]),
            max_offset=float(section["max_offset"]),
            bootstrap_replicates=int(section["bootstrap_replicates"]),
            bootstrap_seed=int(section["bootstrap_seed"]),
            band=tuple(float(q) for q in section.get("band", cls.band)),
            coverage_levels=tuple(float(v) for v in section["coverage_levels"]),
        )

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, mag: (B + 1,), rounded so that 20 + 15 * 0.2 is exactly 23."""
        n_bins = int(round((self.mag_max - self.mag_min) / self.mag_step))
        return np.round(self.mag_min + self.mag_step * np.arange(n_bins + 1), 9)


# -- matching ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Matching:
    """One-to-one pairs between the rows of a truth and a predicted catalog."""

    true_index: np.ndarray  # (M,) row positions in the truth catalog
    pred_index: np.ndarray  # (M,) row positions in the predicted catalog
    true_matched: np.ndarray  # (T,) bool: the truth row has a partner
    pred_matched: np.ndarray  # (P,) bool: the predicted row has a partner


def _image_slices(image_id: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order by image and the start offsets (n_images + 1,) of each image's rows."""
    order = np.argsort(image_id, kind="stable")
    starts = np.searchsorted(image_id[order], np.arange(n_images + 1), side="left")
    return order, starts


def match_catalogs(
    truth: pd.DataFrame, pred: pd.DataFrame, n_images: int, max_offset: float = 1.0
) -> Matching:
    """Per image, the one-to-one assignment of detections to stars (Hungarian algorithm).

    Pairs with max(|dx|, |dy|) >= max_offset are forbidden. Forbidden pairs cost more than any
    set of allowed ones, so the assignment first maximizes the number of allowed pairs, then
    minimizes their summed distance; forbidden pairs it still returns are dropped.
    """
    t_img = truth["image_id"].to_numpy(np.int64)
    p_img = pred["image_id"].to_numpy(np.int64)
    tx, ty = truth["x"].to_numpy(float), truth["y"].to_numpy(float)
    px, py = pred["x"].to_numpy(float), pred["y"].to_numpy(float)
    t_order, t_starts = _image_slices(t_img, n_images)
    p_order, p_starts = _image_slices(p_img, n_images)
    t_count, p_count = np.diff(t_starts), np.diff(p_starts)
    # 8 stars at most per image: any allowed assignment costs < 8 * sqrt(2) * max_offset.
    forbidden_cost = 1e3 * (1.0 + max_offset) * (1 + max(t_count.max(initial=0), 1))
    pairs_t, pairs_p = [], []
    for image in np.flatnonzero((t_count > 0) & (p_count > 0)):
        ti = t_order[t_starts[image] : t_starts[image + 1]]
        pi = p_order[p_starts[image] : p_starts[image + 1]]
        dx = px[pi][None, :] - tx[ti][:, None]  # (n_true, n_pred), pixels
        dy = py[pi][None, :] - ty[ti][:, None]
        allowed = np.maximum(np.abs(dx), np.abs(dy)) < max_offset
        if not allowed.any():
            continue
        cost = np.where(allowed, np.hypot(dx, dy), forbidden_cost)
        rows, cols = linear_sum_assignment(cost)
        keep = allowed[rows, cols]
        pairs_t.append(ti[rows[keep]])
        pairs_p.append(pi[cols[keep]])
    true_index = np.concatenate(pairs_t) if pairs_t else np.zeros(0, np.int64)
    pred_index = np.concatenate(pairs_p) if pairs_p else np.zeros(0, np.int64)
    true_matched = np.zeros(len(truth), bool)
    pred_matched = np.zeros(len(pred), bool)
    true_matched[true_index] = True
    pred_matched[pred_index] = True
    return Matching(true_index, pred_index, true_matched, pred_matched)


# -- per-image counts and the bootstrap --------------------------------------------------------
def bin_index(mag: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each magnitude (bins are [lo, hi)); -1 outside every bin or non-finite."""
    mag = np.asarray(mag, dtype=float)
    idx = np.searchsorted(edges, mag, side="right") - 1
    inside = np.isfinite(mag) & (mag >= edges[0]) & (mag < edges[-1])
    return np.where(inside, idx, -1)


def per_image_counts(
    image_id: np.ndarray, bins: np.ndarray, n_images: int, n_bins: int, selected=None
) -> np.ndarray:
    """(N, B) counts of rows per image and bin (rows with bin -1 or not `selected` skipped)."""
    keep = bins >= 0 if selected is None else (bins >= 0) & selected
    flat = image_id[keep] * n_bins + bins[keep]
    return np.bincount(flat, minlength=n_images * n_bins).reshape(n_images, n_bins)


def bootstrap_weights(n_images: int, n_replicates: int, seed: int) -> np.ndarray:
    """(R, N) multiplicities: replicate r resamples N images with replacement."""
    rng = np.random.default_rng(seed)
    weights = np.empty((n_replicates, n_images), dtype=np.int32)
    for r in range(n_replicates):
        weights[r] = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
    return weights


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Inverted-CDF quantile of `values` (n,) under each row of `weights` (R, n): (R,).

    With integer weights it equals np.quantile(np.repeat(values, w), q, method='inverted_cdf'),
    the quantile of the resampled set itself. NaN where a row's weights sum to 0.
    """
    weights = np.atleast_2d(weights)
    if values.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[:, order], axis=1, dtype=np.float64)  # (R, n)
    total = cum[:, -1]
    first = (cum < q * total[:, None]).sum(axis=1)  # first position whose cum weight >= q total
    out = values[order][np.minimum(first, values.size - 1)]
    return np.where(total > 0, out, np.nan)


# -- one run ------------------------------------------------------------------------------------
def score_run(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    n_images: int,
    config: EvaluateConfig,
    *,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every statistic of one predicted catalog: columns statistic, mag_lo, mag_hi, nominal,
    replicate, value (replicate -1 is the point estimate, 0..R-1 the bootstrap replicates)."""
    if weights is None:
        weights = bootstrap_weights(n_images, config.bootstrap_replicates, config.bootstrap_seed)
    # Row 0: every image once (the point estimate); rows 1..R: the replicates. (R + 1, N)
    w = np.vstack([np.ones((1, n_images), weights.dtype), weights]).astype(np.float64)
    replicate = np.arange(-1, w.shape[0] - 1)
    edges = config.edges
    n_bins = len(edges) - 1
    match = match_catalogs(truth, pred, n_images, config.max_offset)
    t_img = truth["image_id"].to_numpy(np.int64)
    p_img = pred["image_id"].to_numpy(np.int64)
    t_bin = bin_index(truth["mag"].to_numpy(), edges)
    p_bin = bin_index(pred["mag"].to_numpy(), edges)

    n_true = w @ per_image_counts(t_img, t_bin, n_images, n_bins)  # (R + 1, B)
    n_true_matched = w @ per_image_counts(t_img, t_bin, n_images, n_bins, match.true_matched)
    n_det = w @ per_image_counts(p_img, p_bin, n_images, n_bins)
    n_det_matched = w @ per_image_counts(p_img, p_bin, n_images, n_bins, match.pred_matched)
    stats: dict[str, np.ndarray] = {
        "recall": _ratio(n_true_matched, n_true),
        "precision": _ratio(n_det_matched, n_det),
        "n_true": n_true,
        "n_detected": n_det,
    }
    # Fractional flux residuals of matched pairs, binned by the TRUE magnitude.
    f_true = truth["flux"].to_numpy(float)[match.true_index]
    f_hat = pred["flux"].to_numpy(float)[match.pred_index]
    residual = (f_hat - f_true) / f_true
    pair_img = t_img[match.true_index]
    pair_bin = t_bin[match.true_index]
    for name, q in (("median", 0.5), ("q25", 0.25), ("q75", 0.75)):
        out = np.full((w.shape[0], n_bins), np.nan)
        for b in range(n_bins):
            in_bin = pair_bin == b
            out[:, b] = weighted_quantile(residual[in_bin], w[:, pair_img[in_bin]], q)
        stats[f"flux_residual_{name}"] = out

    frames = []
    lo, hi = (
        np.repeat(edges[:-1][None, :], w.shape[0], 0),
        np.repeat(edges[1:][None, :], w.shape[0], 0),
    )
    rep = np.repeat(replicate[:, None], n_bins, 1)
    for name in BINNED_STATISTICS:
        frames.append(
            pd.DataFrame(
                {
                    "statistic": name,
                    "mag_lo": lo.ravel(),
                    "mag_hi": hi.ravel(),
                    "nominal": np.nan,
                    "replicate": rep.ravel(),
                    "value": stats[name].ravel(),
                }
            )
        )
    frames.extend(_calibration(truth, pred, match, pair_img, n_images, config, w, replicate))
    return pd.concat(frames, ignore_index=True)


def _calibration(
    truth, pred, match, pair_img, n_images, config, w, replicate
) -> list[pd.DataFrame]:
    """Realized coverage of central intervals of matched stars, per nominal level."""
    levels = np.asarray(config.coverage_levels, dtype=float)
    z = norm.ppf(0.5 + levels / 2)  # (L,) half-width of the central interval, in sd
    t, p = match.true_index, match.pred_index

    def coverage(errors: np.ndarray, sds: np.ndarray, images: np.ndarray) -> np.ndarray:
        valid = np.isfinite(sds) & np.isfinite(errors)  # NaN sd: the method cannot say
        covered = np.abs(errors[valid])[:, None] <= z[None, :] * sds[valid][:, None]  # (M, L)
        per_image = np.zeros((n_images, len(levels)))
        np.add.at(per_image, images[valid], covered)
        total = np.bincount(images[valid], minlength=n_images).astype(float)
        return _ratio(w @ per_image, (w @ total)[:, None])  # (R + 1, L)

    log_err = np.log(pred["flux"].to_numpy(float)[p]) - np.log(truth["flux"].to_numpy(float)[t])
    log_sd = pred["log_flux_sd"].to_numpy(float)[p]
    loc_err = np.concatenate(
        [
            pred["x"].to_numpy(float)[p] - truth["x"].to_numpy(float)[t],
            pred["y"].to_numpy(float)[p] - truth["y"].to_numpy(float)[t],
        ]
    )
    loc_sd = np.concatenate([pred["x_sd"].to_numpy(float)[p], pred["y_sd"].to_numpy(float)[p]])
    results = {
        "coverage_log_flux": coverage(log_err, log_sd, pair_img),
        "coverage_location": coverage(loc_err, loc_sd, np.concatenate([pair_img, pair_img])),
    }
    frames = []
    for name in CALIBRATION_STATISTICS:
        values = results[name]
        frames.append(
            pd.DataFrame(
                {
                    "statistic": name,
                    "mag_lo": np.nan,
                    "mag_hi": np.nan,
                    "nominal": np.tile(levels, len(replicate)),
                    "replicate": np.repeat(replicate, len(levels)),
                    "value": values.ravel(),
                }
            )
        )
    return frames


# -- aggregation ---------------------------------------------------------------------------------
def aggregate_runs(runs: pd.DataFrame, band: tuple[float, float] = (0.25, 0.75)) -> pd.DataFrame:
    """Per-seed rows (point estimate, band of its replicates) and pooled rows (seed -1: the mean
    of the seeds' point estimates, band of the replicates of all seeds pooled)."""
    keys = ["method", "d", "statistic", "mag_lo", "mag_hi", "nominal"]
    runs = runs.copy()
    # NaN keys (unbinned rows) would vanish from groupby: group on a filled copy.
    runs[["mag_lo", "mag_hi", "nominal"]] = runs[["mag_lo", "mag_hi", "nominal"]].fillna(-1.0)
    point = runs[runs["replicate"] == POINT_ESTIMATE]
    reps = runs[runs["replicate"] != POINT_ESTIMATE]

    def bands(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        grouped = frame.groupby(by, sort=True)["value"]
        return pd.DataFrame(
            {"lower": grouped.quantile(band[0]), "upper": grouped.quantile(band[1])}
        ).reset_index()

    per_seed = point.drop(columns="replicate").merge(
        bands(reps, keys + ["seed"]), on=keys + ["seed"], how="left"
    )
    per_seed["n_seeds"] = 1
    pooled = (
        point.groupby(keys, sort=True)
        .agg(value=("value", "mean"), n_seeds=("seed", "nunique"))
        .reset_index()
        .merge(bands(reps, keys), on=keys, how="left")
    )
    pooled["seed"] = POOLED_SEED
    table = pd.concat([per_seed, pooled], ignore_index=True)
    for col in ("mag_lo", "mag_hi", "nominal"):
        table[col] = table[col].where(table[col] >= 0)  # back to NaN
    table = table.sort_values(["method", "d", "seed", "statistic", "mag_lo", "nominal"])
    return table[METRICS_SCHEMA.names].reset_index(drop=True)


# -- files ---------------------------------------------------------------------------------------
def n_images_of_cube(path: str | os.PathLike, depth: int | None = None) -> int:
    """N of an image cube from its header alone (no pixels read); checks D when given."""
    return read_cube_header(path, image_shape=None, depth=depth)[1][0]


def write_table(
    df: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema, metadata: dict | None = None
) -> None:
    """Write a metrics table with its schema and provenance, atomically."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    provenance = {"version": __version__, **(metadata or {})}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(provenance, default=str)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike, schema: pa.Schema = METRICS_SCHEMA) -> pd.DataFrame:
    """Read a metrics table; raise MetricsError naming the file when it breaks the schema."""
    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"{path}: metrics table not found")
    try:
        df = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise MetricsError(f"{path}: not a readable Parquet table ({err})") from err
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise MetricsError(f"{path}: metrics table lacks columns {missing}")
    return df


# -- the README table ----------------------------------------------------------------------------
#: SPEC §7 (paper, figure 2), dimmest bin: d -> (precision, recall, flux residual), text.
PAPER_DIMMEST = {1: ("0.65", "0.25", "> 20 %"), "coadd": ("~flat", "> 0.70", "< 10 %")}


def _cell(row: pd.DataFrame, stat: str, pct: bool = False) -> str:
    """'value [lower, upper]' of one statistic of a table row group."""
    v, lo, hi = row.loc[stat, ["value", "lower", "upper"]]
    if not np.isfinite(v):
        return "n/a"
    f = (lambda x: f"{100 * x:+.1f} %") if pct else (lambda x: f"{x:.2f}")
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def _spread(row: pd.DataFrame) -> str:
    """The residuals' own 25-75 % range (mean over seeds), percent."""
    lo, hi = row.loc["flux_residual_q25", "value"], row.loc["flux_residual_q75", "value"]
    return "n/a" if not np.isfinite(lo) else f"{100 * lo:+.1f} % to {100 * hi:+.1f} %"


def results_table(metrics: pd.DataFrame, method: str = "encoder") -> str:
    """Markdown table: dimmest-bin precision, recall and median flux residual per d vs the paper."""
    pooled = metrics[(metrics["seed"] == POOLED_SEED) & (metrics["method"] == method)]
    if pooled.empty:
        raise MetricsError(f"no pooled rows for method {method!r} in the metrics table")
    last_lo = pooled["mag_lo"].max()
    dim = pooled[pooled["mag_lo"] == last_lo]
    lines = [
        f"| d | seeds | precision {last_lo:.1f}-{dim['mag_hi'].max():.1f} | recall | "
        "median flux residual | residual 25-75 % | paper (precision, recall, flux) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in sorted(dim["d"].unique()):
        row = dim[dim["d"] == d].set_index("statistic")
        paper = PAPER_DIMMEST[1] if d == 1 else PAPER_DIMMEST["coadd"]
        lines.append(
            f"| {d} | {int(row.loc['recall', 'n_seeds'])} | {_cell(row, 'precision')} "
            f"| {_cell(row, 'recall')} | {_cell(row, 'flux_residual_median', pct=True)} "
            f"| {_spread(row)} | {', '.join(paper)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m coaddbliss.metrics results/metrics/metrics.parquet`: print the README table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("table", type=Path, help="aggregate metrics table (metrics.parquet)")
    parser.add_argument("--method", default="encoder", help="encoder or sep")
    parser.add_argument(
        "--ablation", action="store_true", help="the table is results/ablation/ablation.parquet"
    )
    args = parser.parse_args(argv)
    try:
        if args.ablation:
            print(ablation_results_table(read_table(args.table, ABLATION_SCHEMA)))
            return
        print(results_table(read_table(args.table), args.method))
    except MetricsError as err:
        parser.exit(1, f"error: {err}\n")


# -- noise-model ablation (issue 6) --------------------------------------------------------------
#: Noise models of the ablation: physical (noise before alignment) and white (after alignment).
NOISE_MODELS = ("physical", "white")

#: The ablation table: results/ablation/ablation.parquet (the aggregate table, `method` split
#: into the noise model of the training data and of the test data).
ABLATION_SCHEMA = pa.schema(
    [
        pa.field("train_noise", pa.string(), nullable=False),  # "physical" or "white"
        pa.field("test_noise", pa.string(), nullable=False),  # "physical" or "white"
        *(f for f in METRICS_SCHEMA if f.name != "method"),
    ]
)


def ablation_summary(
    runs: list[tuple[str, str, pd.DataFrame]], band: tuple[float, float] = (0.25, 0.75)
) -> pd.DataFrame:
    """Aggregate run tables labelled (train noise, test noise, run table) into the ablation table:
    per seed and pooled over seeds (seed -1), with bootstrap bands, as `aggregate_runs`."""
    if not runs:
        raise MetricsError("no run tables for the ablation")
    frames = []
    for train_noise, test_noise, run in runs:
        bad = {train_noise, test_noise} - set(NOISE_MODELS)
        if bad:
            raise MetricsError(f"unknown noise model(s) {sorted(bad)}; expected {NOISE_MODELS}")
        # the cell replaces the producing method's name (the main runs say "encoder")
        frames.append(run.assign(method=f"{train_noise}\t{test_noise}"))
    table = aggregate_runs(pd.concat(frames, ignore_index=True), band=band)
    cells = table.pop("method").str.split("\t", expand=True)
    table.insert(0, "test_noise", cells[1])
    table.insert(0, "train_noise", cells[0])
    table = table.sort_values(["d", "train_noise", "test_noise", "seed", "statistic", "mag_lo"])
    return table[ABLATION_SCHEMA.names].reset_index(drop=True)


def ablation_results_table(table: pd.DataFrame, nominal: float = 0.9) -> str:
    """Markdown: dimmest-bin precision, recall, flux residual and log-flux coverage per cell."""
    pooled = table[table["seed"] == POOLED_SEED]
    if pooled.empty:
        raise MetricsError("no pooled rows in the ablation table")
    last_lo = pooled["mag_lo"].max()
    lines = [
        f"| d | trained on | tested on | precision {last_lo:.1f}-{pooled['mag_hi'].max():.1f} "
        f"| recall | median flux residual | residual 25-75 % | log-flux coverage at {nominal} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (d, train, test), cell in pooled.groupby(["d", "train_noise", "test_noise"]):
        dim = cell[cell["mag_lo"] == last_lo].set_index("statistic")
        cov = cell[
            (cell["statistic"] == "coverage_log_flux") & np.isclose(cell["nominal"], nominal)
        ]
        cov_text = "n/a" if cov.empty else f"{cov['value'].iloc[0]:.2f}"
        lines.append(
            f"| {d} | {train} | {test} | {_cell(dim, 'precision')} | {_cell(dim, 'recall')} "
            f"| {_cell(dim, 'flux_residual_median', pct=True)} | {_spread(dim)} | {cov_text} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
