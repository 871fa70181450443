"""Loss accounting: why each missed star was missed and why each spurious detection exists.

Every true star in the magnitude range gets a geometric CATEGORY from the truth alone, first that
applies (star-star separations are Euclidean: blending is radial):

1. `tile_shared`    a brighter star lies in the same tile of the encoder's grid. First because it
                    is a hard limit of the variational family (one star per tile, docs/method.md
                    §5): no training fixes it, whatever else is near;
2. `neighbour_lt2`  a brighter star closer than 2 px (inside the PSF core, FWHM 3.6 px),
3. `neighbour_2_4`  ... 2-4 px,
4. `neighbour_4_8`  ... 4-8 px: blending, closest neighbour first, the most severe explanation
                    wins. Fainter neighbours are ignored: they barely change a star's light;
5. `tile_edge`      within 0.25 px of a tile edge (tiles predict independently: a star on an
                    edge splits its evidence between two tiles);
6. `isolated`       none of the above.

The category is defined for matched and missed stars alike, so `recall` per category is
comparable between methods side by side (SEP has no tiles, so its `tile_shared` recall shows what
the encoder's family forbids). A MISSED star's CAUSE is its category, except that `isolated`
is split by what the method left near it (detection-star distances use max(|dx|, |dy|), the
matcher's own metric, docs/method.md §6):

7. `offset_detection`  a detection within 2 px: the star was seen but placed outside the 1 px
                       match window (or its detection went to a neighbour);
8. `below_threshold`   a candidate within 2 px: the method saw something but under its detection
                       threshold (encoder: q(n = 1) above `diagnostics.candidate_threshold`;
                       SEP: a lower detection threshold). Candidates are a superset of the
                       detections, and step 7 already took stars with a detection that near;
9. `nothing`           neither: the star left no trace at all.

An UNMATCHED detection gets one cause, first that applies: `double_detection` (within 2.5 px of
a star matched to another detection), `offset_from_star` (within 2 px of a true star, so > 1 px
off since it did not match), `noise` (nothing within 2 px).

Missed stars are binned by true magnitude, spurious detections by estimated magnitude (as recall
and precision are, docs/method.md §6); rows outside the bins are not counted.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from coaddbliss.aggregate import POOLED_SEED
from coaddbliss.errors import InputError
from coaddbliss.matching import match_catalogs
from coaddbliss.metrics import bin_index
from coaddbliss.parquet import read_table
from coaddbliss.sections import from_sections

#: Geometric categories of true stars, in priority order.
CATEGORIES = (
    "tile_shared",
    "neighbour_lt2",
    "neighbour_2_4",
    "neighbour_4_8",
    "tile_edge",
    "isolated",
)
#: Causes of a missed star, in priority order: the categories, `isolated` split three ways.
MISSED_CAUSES = CATEGORIES[:-1] + ("offset_detection", "below_threshold", "nothing")
#: The category whose recall each cause's row reports.
CAUSE_CATEGORY = {c: c for c in CATEGORIES[:-1]} | {
    c: "isolated" for c in ("offset_detection", "below_threshold", "nothing")
}
#: Causes of an unmatched detection, in priority order.
SPURIOUS_CAUSES = ("double_detection", "offset_from_star", "noise")
#: `category` of spurious rows: their n_category is every detection of the bin.
DETECTION = "detection"

#: Brighter-neighbour separation bands (Euclidean, pixels): < 2, 2-4, 4-8.
NEIGHBOUR_RADII = (2.0, 4.0, 8.0)
#: A star this close to a tile edge (either axis) is `tile_edge`, pixels.
EDGE_MARGIN = 0.25
#: Detections or candidates this close (max-norm) to a missed star explain it, pixels.
NEAR_RADIUS = 2.0
#: An unmatched detection this close (max-norm) to a matched star is a second detection, pixels.
DOUBLE_RADIUS = 2.5

#: The per-run and pooled table: results/{name}/metrics/loss_accounting.parquet.
LOSS_SCHEMA = pa.schema(
    [
        pa.field("method", pa.string(), nullable=False),  # "encoder" or "sep"
        pa.field("d", pa.int64(), nullable=False),  # coadd depth
        pa.field("seed", pa.int64(), nullable=False),  # training seed; -1: pooled over seeds
        pa.field("kind", pa.string(), nullable=False),  # "missed" (true stars) | "spurious"
        pa.field("cause", pa.string(), nullable=False),  # MISSED_CAUSES or SPURIOUS_CAUSES
        pa.field("category", pa.string(), nullable=False),  # CAUSE_CATEGORY; spurious: detection
        pa.field("mag_lo", pa.float64(), nullable=False),  # bin lower edge, mag
        pa.field("mag_hi", pa.float64(), nullable=False),  # bin upper edge (exclusive), mag
        pa.field("count", pa.float64(), nullable=False),  # stars/detections of the cause (pooled:
        # mean per seed)
        pa.field("n_category", pa.float64(), nullable=False),  # all stars of the category
        # (spurious: all detections) in the bin, matched or not (pooled: mean per seed)
        pa.field("n_matched", pa.float64(), nullable=False),  # the matched ones among them
        pa.field("recall", pa.float64(), nullable=True),  # n_matched / n_category (missed rows;
        # pooled: ratio of sums); NaN for spurious rows and empty categories
        pa.field("n_seeds", pa.int64(), nullable=False),  # seeds behind the row
    ]
)


class AccountingError(InputError):
    """Inputs that cannot be accounted for; the message names the file or the problem."""


@dataclass(frozen=True)
class AccountingConfig:
    """The geometry and bins of the accounting (config: image, encoder, evaluate, diagnostics)."""

    source_lo: float = 24.0  # first pixel of the source square: origin of the tile grid, pixels
    tile_size: int = 4  # encoder tile side, pixels
    max_offset: float = 1.0  # the matcher's window: max(|dx|, |dy|) < this, pixels
    mag_edges: tuple[float, ...] = (20.0, 21.0, 22.0, 23.0)  # bins, mag ([lo, hi))

    def __post_init__(self):
        if len(self.mag_edges) < 2 or np.any(np.diff(self.mag_edges) <= 0):
            raise AccountingError(f"mag_edges must increase, got {self.mag_edges}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AccountingConfig:
        """From a config with (at least) image, encoder, evaluate and diagnostics sections."""
        sections = ("image", "encoder", "evaluate", "diagnostics")
        return from_sections(cls, *(config[s] for s in sections))


# -- pairs within an image -----------------------------------------------------------------------
def _same_image_pairs(a_img: np.ndarray, b_img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (ia, ib) of every pair of rows of a and b in the same image."""
    order = np.argsort(b_img, kind="stable")
    sorted_b = b_img[order]
    start = np.searchsorted(sorted_b, a_img, side="left")
    counts = np.searchsorted(sorted_b, a_img, side="right") - start
    ia = np.repeat(np.arange(len(a_img)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return ia, order[np.repeat(start, counts) + within]


def _any_near(a: pd.DataFrame, b: pd.DataFrame, radius: float, b_mask=None) -> np.ndarray:
    """(len(a),) bool: some row of b (where b_mask) lies within `radius` max-norm, same image."""
    ia, ib = _same_image_pairs(a["image_id"].to_numpy(), b["image_id"].to_numpy())
    dx = b["x"].to_numpy(float)[ib] - a["x"].to_numpy(float)[ia]
    dy = b["y"].to_numpy(float)[ib] - a["y"].to_numpy(float)[ia]
    near = np.maximum(np.abs(dx), np.abs(dy)) < radius
    if b_mask is not None:
        near &= np.asarray(b_mask)[ib]
    return np.bincount(ia[near], minlength=len(a)) > 0


# -- classification ------------------------------------------------------------------------------
def tile_edge_distance(coord: np.ndarray, cfg: AccountingConfig) -> np.ndarray:
    """Distance of each coordinate to the nearest tile edge of its axis, pixels."""
    frac = np.mod(np.asarray(coord, float) - cfg.source_lo, cfg.tile_size)
    return np.minimum(frac, cfg.tile_size - frac)


def star_categories(truth: pd.DataFrame, cfg: AccountingConfig) -> np.ndarray:
    """(T,) the geometric category (CATEGORIES) of every true star, first that applies."""
    img = truth["image_id"].to_numpy()
    x, y, flux = (truth[c].to_numpy(float) for c in ("x", "y", "flux"))
    tile_x = np.floor((x - cfg.source_lo) / cfg.tile_size).astype(np.int64)
    tile_y = np.floor((y - cfg.source_lo) / cfg.tile_size).astype(np.int64)
    i, j = _same_image_pairs(img, img)
    brighter = flux[j] > flux[i]  # also drops i == j
    i, j = i[brighter], j[brighter]
    sep = np.hypot(x[j] - x[i], y[j] - y[i])  # pixels
    same_tile = (tile_x[i] == tile_x[j]) & (tile_y[i] == tile_y[j])

    def has(pair_mask: np.ndarray) -> np.ndarray:
        return np.bincount(i[pair_mask], minlength=len(truth)) > 0

    r1, r2, r3 = NEIGHBOUR_RADII
    edge = np.minimum(tile_edge_distance(x, cfg), tile_edge_distance(y, cfg)) < EDGE_MARGIN
    conditions = [has(same_tile), has(sep < r1), has(sep < r2), has(sep < r3), edge]
    return np.select(conditions, list(CATEGORIES[:-1]), default=CATEGORIES[-1]).astype(object)


def missed_causes(
    truth: pd.DataFrame,
    detections: pd.DataFrame,
    candidates: pd.DataFrame,
    true_matched: np.ndarray,
    categories: np.ndarray,
) -> np.ndarray:
    """(T,) the cause (MISSED_CAUSES) of every missed star; None for matched stars."""
    causes = np.where(true_matched, None, categories).astype(object)
    isolated = ~true_matched & (categories == "isolated")
    near_det = _any_near(truth, detections, NEAR_RADIUS)
    near_cand = _any_near(truth, candidates, NEAR_RADIUS)
    causes[isolated] = np.select(
        [near_det[isolated], near_cand[isolated]],
        ["offset_detection", "below_threshold"],
        default="nothing",
    )
    return causes


def spurious_causes(
    truth: pd.DataFrame, detections: pd.DataFrame, true_matched: np.ndarray,
    pred_matched: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(P,) the cause (SPURIOUS_CAUSES) of every unmatched detection; None for matched ones."""
    double = _any_near(detections, truth, DOUBLE_RADIUS, b_mask=true_matched)
    near_star = _any_near(detections, truth, NEAR_RADIUS)
    causes = np.select([double, near_star], list(SPURIOUS_CAUSES[:2]), default=SPURIOUS_CAUSES[2])
    return np.where(pred_matched, None, causes.astype(object))


# -- one run -------------------------------------------------------------------------------------
def _count(labels: np.ndarray, bins: np.ndarray, names, n_bins: int) -> np.ndarray:
    """(len(names), n_bins) counts of rows with each label in each bin."""
    return np.array([np.bincount(bins[(labels == n) & (bins >= 0)], minlength=n_bins)
                     for n in names]).reshape(len(names), n_bins)  # fmt: skip


def account_run(
    truth: pd.DataFrame,
    detections: pd.DataFrame,
    candidates: pd.DataFrame,
    n_images: int,
    cfg: AccountingConfig,
    *,
    method: str,
    d: int,
    seed: int,
) -> pd.DataFrame:
    """The loss table of one run (LOSS_SCHEMA): every cause x bin, zero counts included."""
    if len(candidates) < len(detections):
        raise AccountingError(
            f"{len(candidates)} candidates but {len(detections)} detections: candidates must be "
            "a superset (a lower threshold)"
        )
    edges = np.asarray(cfg.mag_edges, float)
    n_bins = len(edges) - 1
    match = match_catalogs(truth, detections, n_images, cfg.max_offset)
    categories = star_categories(truth, cfg)
    missed = missed_causes(truth, detections, candidates, match.true_matched, categories)
    spurious = spurious_causes(truth, detections, match.true_matched, match.pred_matched)
    t_bins = bin_index(truth["mag"].to_numpy(float), edges)
    p_bins = bin_index(detections["mag"].to_numpy(float), edges)
    in_category = _count(categories, t_bins, CATEGORIES, n_bins)
    matched = _count(np.where(match.true_matched, categories, None), t_bins, CATEGORIES, n_bins)
    cat_row = {c: k for k, c in enumerate(CATEGORIES)}
    n_det = np.bincount(p_bins[p_bins >= 0], minlength=n_bins)
    n_det_matched = np.bincount(p_bins[(p_bins >= 0) & match.pred_matched], minlength=n_bins)
    rows = []
    for kind, labels, bins, names in (
        ("missed", missed, t_bins, MISSED_CAUSES),
        ("spurious", spurious, p_bins, SPURIOUS_CAUSES),
    ):
        counts = _count(labels, bins, names, n_bins)
        for k, cause in enumerate(names):
            for b in range(n_bins):
                if kind == "missed":
                    category = CAUSE_CATEGORY[cause]
                    total = in_category[cat_row[category], b]
                    hits = matched[cat_row[category], b]
                    recall = hits / total if total else np.nan
                else:
                    category, total, hits, recall = DETECTION, n_det[b], n_det_matched[b], np.nan
                rows.append((kind, cause, category, edges[b], edges[b + 1], counts[k, b],
                             total, hits, recall))  # fmt: skip
    table = pd.DataFrame(rows, columns=LOSS_SCHEMA.names[3:-1])
    table.insert(0, "seed", int(seed))
    table.insert(0, "d", int(d))
    table.insert(0, "method", method)
    table["n_seeds"] = 1
    for col in ("count", "n_category", "n_matched"):
        table[col] = table[col].astype(float)
    return table


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-seed rows plus pooled rows (seed -1): counts averaged over seeds, recall pooled."""
    runs = runs[runs["seed"] != POOLED_SEED]
    keys = ["method", "d", "kind", "cause", "category", "mag_lo", "mag_hi"]
    grouped = runs.groupby(keys, sort=False)
    pooled = grouped[["count", "n_category", "n_matched"]].mean()
    pooled["n_seeds"] = grouped["seed"].nunique()
    sums = grouped[["n_category", "n_matched"]].sum()
    pooled["recall"] = sums["n_matched"] / sums["n_category"].where(sums["n_category"] > 0)
    pooled.loc[pooled.index.get_level_values("kind") == "spurious", "recall"] = np.nan
    pooled = pooled.reset_index().assign(seed=POOLED_SEED)
    table = pd.concat([runs, pooled[LOSS_SCHEMA.names]], ignore_index=True)
    return table[LOSS_SCHEMA.names].reset_index(drop=True)


# -- files ---------------------------------------------------------------------------------------
def read_loss_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a loss table (LOSS_SCHEMA); AccountingError naming the file when it is bad."""
    return read_table(path, LOSS_SCHEMA, what="loss table", error=AccountingError)


# -- the printout --------------------------------------------------------------------------------
def _label(cause: str) -> str:
    return f"isolated: {cause}" if CAUSE_CATEGORY.get(cause) == "isolated" else cause


def report(table: pd.DataFrame, mag_min: float | None = None) -> str:
    """Markdown tables per d: recall per category and missed/spurious counts per cause, per
    method (pooled rows: counts are per run, mean over seeds), over bins with mag_lo >= mag_min."""
    pooled = table[table["seed"] == POOLED_SEED]
    if mag_min is not None:
        pooled = pooled[pooled["mag_lo"] >= mag_min - 1e-9]
    if pooled.empty:
        raise AccountingError("no pooled rows (in that magnitude range) in the loss table")
    methods = sorted(pooled["method"].unique())
    lo, hi = pooled["mag_lo"].min(), pooled["mag_hi"].max()
    sums = pooled.groupby(["d", "method", "kind", "cause"])[["count", "n_category", "n_matched"]]
    sums = sums.sum()
    seeds = pooled.groupby(["d", "method"])["n_seeds"].max()
    out = []
    for d in sorted(pooled["d"].unique()):
        runs = ", ".join(f"{m}: {seeds.get((d, m), 0)} seed(s)" for m in methods)
        out.append(f"### d = {d} (mag {lo:.1f}-{hi:.1f}; {runs}; counts per run)\n")
        head = ["missed-star cause", "stars in category"]
        head += [f"{m} recall" for m in methods] + [f"{m} missed" for m in methods]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for cause in MISSED_CAUSES + ("total",):
            cells, recalls, counts = [], [], []
            for m in methods:
                key = (d, m, "missed")
                if cause == "total":  # every star once: the sum over categories
                    cat = sums.loc[key].loc[list(CATEGORIES[:-1]) + ["nothing"]]
                    n, hit = cat["n_category"].sum(), cat["n_matched"].sum()
                    miss = sums.loc[key]["count"].sum()
                elif key + (cause,) in sums.index:
                    row = sums.loc[key + (cause,)]
                    n, hit, miss = row["n_category"], row["n_matched"], row["count"]
                else:
                    n, hit, miss = np.nan, np.nan, np.nan
                cells.append(n)
                recalls.append("n/a" if not n > 0 else f"{hit / n:.3f}")
                counts.append("n/a" if not np.isfinite(miss) else f"{miss:.1f}")
            stars = next((f"{n:.1f}" for n in cells if np.isfinite(n)), "n/a")
            out.append(f"| {_label(cause)} | {stars} | " + " | ".join(recalls + counts) + " |")
        out.append("")
        head = ["spurious-detection cause"] + [f"{m} count" for m in methods]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for cause in SPURIOUS_CAUSES:
            counts = [
                f"{sums.loc[(d, m, 'spurious', cause), 'count']:.1f}"
                if (d, m, "spurious", cause) in sums.index
                else "n/a"
                for m in methods
            ]
            out.append(f"| {cause} | " + " | ".join(counts) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """`python -m coaddbliss.loss_accounting TABLE`: print the loss accounting per d."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("table", type=Path, help="loss table (metrics/loss_accounting.parquet)")
    parser.add_argument("--mag-min", type=float, help="only bins with mag_lo >= this (mag)")
    args = parser.parse_args(argv)
    try:
        print(report(read_loss_table(args.table), args.mag_min))
    except AccountingError as err:
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
