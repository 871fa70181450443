"""The encoder's targets, judged from a finished run (docs/encoder.md, "Against the targets").

    python -m coaddbliss.targets results/best        (make targets RUN=best)

Reads what the workflow wrote under a results root: `metrics/metrics.parquet` (recall, precision,
flux residuals and interval coverage per 0.2-mag bin, pooled over seeds), `metrics/curves.parquet`
(operating curves), `metrics/reliability.parquet`, `metrics/loss_accounting.parquet`, the flux
references `metrics/bayes_flux.parquet` and `metrics/crowded_flux.parquet`, each encoder's
`history.tsv` and the catalog jobs' benchmark records; where SEP's point in a 0.2-mag bin beats the
encoder's and the run's curves do not cover that bin, the encoder's candidates are swept there as
the operating_curves rule sweeps its own bins. Prints one row per target and depth: what was
measured, and whether it is met (`n/a` where the run cannot say: a table or a depth it did not
make).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import binom

from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED
from coaddbliss.bayes_flux import BAYES_SCHEMA, CROWDED_SCHEMA
from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.errors import InputError
from coaddbliss.loss_accounting import LOSS_SCHEMA
from coaddbliss.metrics import read_metrics_table
from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    RELIABILITY_SCHEMA,
    CurvesConfig,
    encoder_score,
    recall_at_precision,
    sweep,
)
from coaddbliss.parquet import read_provenance, read_table
from coaddbliss.report import statistic_value

# The targets (docs/encoder.md). Recall and precision are fractions, flux residuals fractions of
# the true flux ("points" below are percentage points).
BRIGHT_MAG_MAX = 22.0  # bins brighter than this (mag_hi <= 22) must reach BRIGHT_RECALL
BRIGHT_RECALL = 0.98
DEEP_DEPTH, DEEP_RECALL, DEEP_PRECISION = 25, 0.95, 0.97  # the dimmest bin at d = 25
DOUBLE_SHARE = 0.005  # second detections of a matched star, share of all detections
# |median residual - a flux reference's median|, interquartile range at most this times the
# reference's: against the isolated star's Bayes reference and the crowded-field reference
FLUX_MEDIAN_POINTS = 0.015
FLUX_IQR_RATIO = 1.2
COVERAGE_LEVELS, COVERAGE_POINTS = (0.5, 0.9), 0.05  # interval coverage, nominal +- 5 points
RELIABILITY_POINTS, RELIABILITY_MIN_DETECTIONS = 0.05, 100  # prob deciles with >= 100 rows
TRAIN_SECONDS = 15 * 60.0  # per encoder, 2 CPU cores
TARGET_CORES = 2  # the budgets' cores: an encoder's time is its core-time over these
INFER_IMAGES_PER_S = 2000.0  # the catalog job, 2 CPU cores
#: Comparisons forgive float round-off only.
EPS = 1e-9


@dataclass(frozen=True)
class Verdict:
    """One target at one depth (d None: the run as a whole)."""

    target: str
    d: int | None
    measured: str
    met: bool | None  # None: this run cannot say


def _bin(lo: float, hi: float) -> str:
    return f"{lo:.1f}-{hi:.1f}"


def _pooled(metrics: pd.DataFrame, method: str, statistic: str) -> pd.Series:
    """Pooled per-bin values of one statistic, indexed by (d, mag_lo, mag_hi)."""
    rows = metrics[
        (metrics["seed"] == POOLED_SEED)
        & (metrics["method"] == method)
        & (metrics["statistic"] == statistic)
        & metrics["mag_lo"].notna()
    ]
    return rows.set_index(["d", "mag_lo", "mag_hi"])["value"].sort_index()


def _encoder_curve(curves: pd.DataFrame | None, d: int, lo: float, hi: float) -> pd.DataFrame:
    """The encoder's operating-curve rows of exactly this depth and bin (every seed)."""
    if curves is None:
        return pd.DataFrame(columns=["seed", "recall", "precision"])
    in_bin = np.isclose(curves["mag_lo"], lo) & np.isclose(curves["mag_hi"], hi)
    return curves[(curves["method"] == "encoder") & (curves["d"] == d) & in_bin]


def bin_curves(
    root: Path, metrics: pd.DataFrame, curves: pd.DataFrame | None
) -> pd.DataFrame | None:
    """`curves` plus the encoder's operating curve in every 0.2-mag bin of each coadd depth that
    has none: its candidate catalogs swept as the operating_curves rule sweeps its own bins (the
    files, thresholds, floor and match window its per-depth table records)."""
    parts = [] if curves is None else [curves]
    truth = None
    for d in sorted(set(metrics["d"]) - {1}):
        table = root / "metrics" / "curves" / f"d{d}.parquet"
        if not table.is_file():
            continue
        made = read_provenance(table)
        cfg = CurvesConfig.from_config(made["curves"], made["max_offset"])
        rows = metrics[(metrics["d"] == d) & metrics["mag_lo"].notna()]
        bins = sorted(
            {(lo, hi) for lo, hi in zip(rows["mag_lo"], rows["mag_hi"], strict=True)}
            - {tuple(b) for b in cfg.bins}
        )
        for path in made["encoder"]:
            if truth is None:
                truth = read_catalog(root / "data" / "test" / "truth.parquet", kind="truth")
            meta = read_metadata(path)
            cat = read_catalog(path, kind="predicted", n_images=meta["n_images"])
            curve = sweep(
                truth,
                cat,
                encoder_score(cat),
                cfg.prob_thresholds,
                meta["n_images"],
                bins,
                cfg.max_offset,
                floor=made["encoder_floor"],
            )
            parts.append(curve.assign(method="encoder", d=d, seed=int(meta["seed"])))
    return pd.concat(parts, ignore_index=True) if parts else None


def _has_curve(curves: pd.DataFrame | None, d: int, lo: float, hi: float) -> bool:
    return not _encoder_curve(curves, d, lo, hi).empty


def _curve_recall(curves: pd.DataFrame | None, d: int, lo: float, hi: float, p: float) -> float:
    """Mean over the encoder's seeds of its best recall at precision >= p on the operating curve
    of exactly this bin; NaN without such a curve or when a seed never reaches p."""
    rows = _encoder_curve(curves, d, lo, hi)
    if rows.empty:
        return np.nan
    recalls = [recall_at_precision(seed_rows, p)[1] for _, seed_rows in rows.groupby("seed")]
    return float(np.mean(recalls))  # NaN if any seed is NaN


def bins_against_sep(metrics: pd.DataFrame, curves: pd.DataFrame | None) -> list[Verdict]:
    """Every coadd depth, every bin: encoder recall >= SEP's at precision >= SEP's, or, where it
    falls short, its operating curve in that bin passes above SEP's point."""
    out = []
    r_e, p_e = _pooled(metrics, "encoder", "recall"), _pooled(metrics, "encoder", "precision")
    r_s, p_s = _pooled(metrics, "sep", "recall"), _pooled(metrics, "sep", "precision")
    for d in sorted(set(r_e.index.get_level_values("d")) - {1}):
        if d not in r_s.index.get_level_values("d"):
            out.append(
                Verdict("recall >= SEP's at precision >= SEP's, every bin", d, "no SEP rows", None)
            )
            continue
        short = []
        bins = r_e.loc[d].index
        for lo, hi in bins:
            re, pe = r_e.loc[(d, lo, hi)], p_e.get((d, lo, hi), np.nan)
            rs, ps = r_s.get((d, lo, hi), np.nan), p_s.get((d, lo, hi), np.nan)
            if re >= rs - EPS and (pe >= ps - EPS or np.isnan(ps)):
                continue
            if _curve_recall(curves, d, lo, hi, ps) >= rs - EPS:
                continue  # the curve passes above SEP's point
            no_curve = "" if _has_curve(curves, d, lo, hi) else ", no curve"
            short.append(f"{_bin(lo, hi)} (R {re:.3f}/{rs:.3f}, P {pe:.3f}/{ps:.3f}{no_curve})")
        text = f"{len(bins) - len(short)} of {len(bins)} bins"
        text += "; short (encoder/SEP): " + ", ".join(short) if short else ""
        out.append(Verdict("recall >= SEP's at precision >= SEP's, every bin", d, text, not short))
    return out


def bright_recall(metrics: pd.DataFrame) -> list[Verdict]:
    """Every depth: recall >= 0.98 in every bin brighter than mag 22."""
    out = []
    recall = _pooled(metrics, "encoder", "recall")
    for d in sorted(set(recall.index.get_level_values("d"))):
        r = recall.loc[d]
        r = r[r.index.get_level_values("mag_hi") <= BRIGHT_MAG_MAX + EPS]
        if r.empty:
            continue
        below = r[r < BRIGHT_RECALL - EPS]
        lo, hi = r.idxmin()
        text = f"min {r.min():.3f} ({_bin(lo, hi)}); {len(below)} of {len(r)} bins below"
        out.append(Verdict(f"recall >= {BRIGHT_RECALL} in 20-22 mag", d, text, below.empty))
    return out


def deep_dimmest(metrics: pd.DataFrame) -> list[Verdict]:
    """d = 25, dimmest bin: recall >= 0.95 at precision >= 0.97."""
    name = f"d = {DEEP_DEPTH} dimmest bin: recall >= {DEEP_RECALL} at precision >= {DEEP_PRECISION}"
    recall = _pooled(metrics, "encoder", "recall")
    if DEEP_DEPTH not in recall.index.get_level_values("d"):
        return [Verdict(name, DEEP_DEPTH, f"no d = {DEEP_DEPTH} in this run", None)]
    key = recall.loc[[DEEP_DEPTH]].index[-1]  # bins are sorted: the last is the dimmest
    r, p = recall[key], _pooled(metrics, "encoder", "precision").get(key, np.nan)
    met = bool(r >= DEEP_RECALL - EPS and p >= DEEP_PRECISION - EPS)
    return [Verdict(name, DEEP_DEPTH, f"recall {r:.3f} at precision {p:.3f}", met)]


def single_exposure_curves(curves: pd.DataFrame | None) -> list[Verdict]:
    """d = 1: at every precision SEP's curve reaches, the encoder's recall is at least SEP's."""
    name = "d = 1: recall >= SEP's at every precision, operating curves"
    if curves is None or not ((curves["d"] == 1) & (curves["method"] == "sep")).any():
        return [Verdict(name, 1, "no d = 1 operating curves", None)]
    parts, met = [], True
    one = curves[curves["d"] == 1]
    for (lo, hi), rows in one.groupby(["mag_lo", "mag_hi"]):
        sep = rows[(rows["method"] == "sep") & rows["precision"].notna()]
        short, unreached = 0, []
        for ps, rs, n in zip(sep["precision"], sep["recall"], sep["n_detected"], strict=True):
            re = _curve_recall(rows, 1, lo, hi, ps)
            if np.isnan(re):
                unreached.append((ps, int(n)))
            elif re < rs - EPS:
                short += 1
        bad = short + len(unreached)
        met &= bad == 0
        text = f"{_bin(lo, hi)}: {len(sep) - bad} of {len(sep)} SEP points"
        if unreached:
            # how many detections SEP's unreached precisions rest on: a point of a few dozen
            # has a binomial sd of several points
            lo_n, hi_n = min(n for _, n in unreached), max(n for _, n in unreached)
            counts = f"{lo_n}" if lo_n == hi_n else f"{lo_n}-{hi_n}"
            text += (
                f" (precision >= {min(p for p, _ in unreached):.2f} not reached; SEP's points"
                f" there rest on {counts} detections)"
            )
        parts.append(text)
    return [Verdict(name, 1, "; ".join(parts), met)]


def second_detections(loss: pd.DataFrame | None) -> list[Verdict]:
    """Unmatched detections that are second detections of a matched star: < 0.5 %."""
    name = f"second detections < {100 * DOUBLE_SHARE:g} % of detections"
    if loss is None:
        return [Verdict(name, None, "no loss accounting table", None)]
    rows = loss[
        (loss["method"] == "encoder")
        & (loss["seed"] == POOLED_SEED)
        & (loss["kind"] == "spurious")
        & (loss["cause"] == "double_detection")
    ]
    out = []
    for d, r in rows.groupby("d"):
        share = r["count"].sum() / r["n_category"].sum() if r["n_category"].sum() else np.nan
        text = f"{100 * share:.2f} % ({r['count'].sum():g} of {r['n_category'].sum():g})"
        out.append(Verdict(name, int(d), text, bool(share < DOUBLE_SHARE)))
    return out


def flux_against_reference(
    metrics: pd.DataFrame, reference: pd.DataFrame | None, what: str
) -> list[Verdict]:
    """Every coadd depth and bin: median residual within 1.5 points of the reference's, and
    interquartile range at most 1.2x the reference's. `reference`: BAYES_SCHEMA or
    CROWDED_SCHEMA rows (None: the run did not make it), `what` its name in the verdicts."""
    names = (
        f"flux median within {100 * FLUX_MEDIAN_POINTS:g} points of {what}",
        f"flux IQR <= {FLUX_IQR_RATIO:g}x {what}'s",
    )
    if reference is None:
        return [Verdict(n, None, f"no table of {what}", None) for n in names]
    median = _pooled(metrics, "encoder", "flux_residual_median")
    iqr = _pooled(metrics, "encoder", "flux_residual_q75") - _pooled(
        metrics, "encoder", "flux_residual_q25"
    )
    ref = reference.assign(iqr=reference["residual_q75"] - reference["residual_q25"])
    ref = ref[np.isfinite(ref["residual_median"].astype(float))]  # bins without stars
    ref = ref.set_index(["d", ref["mag_lo"].round(6)])
    out = []
    for d in sorted(set(median.index.get_level_values("d")) - {1}):
        gap, ratio = {}, {}
        for (lo, hi), m in median.loc[d].items():
            if (d, round(lo, 6)) not in ref.index or not np.isfinite(m):
                continue
            b = ref.loc[(d, round(lo, 6))]
            gap[(lo, hi)] = m - b["residual_median"]
            ratio[(lo, hi)] = iqr.get((d, lo, hi), np.nan) / b["iqr"]
        if not gap:
            out += [Verdict(n, d, "no bins in common with the reference", None) for n in names]
            continue
        g, q = pd.Series(gap), pd.Series(ratio)
        worst_g, worst_q = g.abs().idxmax(), q.idxmax()
        n_g = int((g.abs() <= FLUX_MEDIAN_POINTS + EPS).sum())
        n_q = int((q <= FLUX_IQR_RATIO + EPS).sum())
        out.append(
            Verdict(
                names[0],
                d,
                f"{n_g} of {len(g)} bins; worst {100 * g[worst_g]:+.1f} points ({_bin(*worst_g)})",
                n_g == len(g),
            )
        )
        out.append(
            Verdict(
                names[1],
                d,
                f"{n_q} of {len(q)} bins; worst {q[worst_q]:.2f}x ({_bin(*worst_q)})",
                n_q == len(q),
            )
        )
    return out


def interval_coverage(metrics: pd.DataFrame) -> list[Verdict]:
    """Central 50 % and 90 % intervals of location and log flux cover their level +- 5 points."""
    rows = metrics[(metrics["seed"] == POOLED_SEED) & (metrics["method"] == "encoder")]
    out = []
    for d in sorted(rows["d"].unique()):
        parts, met = [], True
        for stat, label in (("coverage_location", "location"), ("coverage_log_flux", "log flux")):
            values = []
            for level in COVERAGE_LEVELS:
                value = statistic_value(rows[rows["d"] == d], stat, level)
                met &= bool(abs(value - level) <= COVERAGE_POINTS + EPS)
                values.append(f"{value:.3f}")
            parts.append(f"{label} " + " / ".join(values))
        levels = " and ".join(f"{100 * lv:g} %" for lv in COVERAGE_LEVELS)
        out.append(
            Verdict(
                f"{levels} intervals cover their level +- 5 points", int(d), "; ".join(parts), met
            )
        )
    return out


def prob_reliability(reliability: pd.DataFrame | None) -> list[Verdict]:
    """`prob` within +- 5 points of the matched fraction in every decile with >= 100 detections
    (every seed and magnitude range the table holds)."""
    name = f"prob reliability +- 5 points, deciles with >= {RELIABILITY_MIN_DETECTIONS} detections"
    if reliability is None:
        return [Verdict(name, None, "no reliability table", None)]
    rows = reliability[
        (reliability["method"] == "encoder")
        & (reliability["n_detected"] >= RELIABILITY_MIN_DETECTIONS)
    ]
    out = []
    for d, r in rows.groupby("d"):
        off = (r["fraction_matched"] - r["mean_prob"]).abs()
        worst = r.loc[off.idxmax()]
        n_ok = int((off <= RELIABILITY_POINTS + EPS).sum())
        mags = "every mag" if np.isinf(worst["mag_lo"]) else _bin(worst["mag_lo"], worst["mag_hi"])
        where = f"seed {worst['seed']}, prob {worst['prob_lo']:.1f}-{worst['prob_hi']:.1f}, {mags}"
        text = f"{n_ok} of {len(r)} deciles; worst {100 * off.max():.1f} points ({where})"
        text += f"; by chance alone {chance_misses(r):.1f} would miss"
        out.append(Verdict(name, int(d), text, n_ok == len(r)))
    return out


def chance_misses(deciles: pd.DataFrame) -> float:
    """Expected number of `deciles` whose matched fraction misses their mean prob by more than
    the target's points if prob were exactly calibrated: each decile's n_detected draws
    binomially at its mean_prob. A decile of 100 detections at 0.5 misses +- 5 points about one
    time in four, so the target cannot be read as "every decile" without this number."""
    expected = 0.0
    for n, p in zip(deciles["n_detected"].astype(int), deciles["mean_prob"], strict=True):
        k = np.arange(n + 1)
        miss = np.abs(k / n - p) > RELIABILITY_POINTS + EPS
        expected += float(binom.pmf(k[miss], n, p).sum())
    return expected


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60))} s"


#: The device line of a training job's log (coaddbliss.device): how many threads it trained on.
THREADS_LINE = re.compile(r"device: cpu \(.*threads: (\d+)\)")


def training_threads(log_path: Path) -> int | None:
    """Threads a CPU training job ran on, from its log's device line; None for a GPU job, a
    missing log or no such line. The log is rewritten when a killed job resumes: the count is
    the last run's, which trained most epochs of a resumed encoder."""
    if not log_path.is_file():
        return None
    counts = THREADS_LINE.findall(log_path.read_text(errors="replace"))
    return int(counts[-1]) if counts else None


def budget(root: Path) -> list[Verdict]:
    """Training time per encoder (the epochs of its history.tsv, resumed runs included) and the
    catalog jobs' images/s (their benchmark records), as run: they depend on the CPU and load.

    An encoder's time is its core-time over TARGET_CORES: wall time x the threads its log names
    (coaddbliss.device's line) / 2, so two one-thread jobs side by side on 2 cores each count
    half their wall time, as the pair trains two encoders in that time; without a thread count
    (a GPU job, no log) its wall time counts.
    """
    out = []
    trained, threads = {}, {}
    for history in sorted(root.glob("models/d*/seed*/history.tsv")):
        if (history.parent / "encoder.pt").is_file():  # finished encoders only
            key = history.parent.relative_to(root / "models")
            epochs = pd.read_csv(history, sep="\t")
            log = root / "logs" / "train_encoder" / key.with_suffix(".log")
            threads[key] = training_threads(log)
            share = TARGET_CORES if threads[key] is None else threads[key]
            trained[key] = epochs["seconds"].sum() * share / TARGET_CORES
    name = f"training <= {TRAIN_SECONDS / 60:g} min per encoder, {TARGET_CORES} CPU cores"
    if trained:
        slowest = max(trained, key=trained.get)
        fastest = _duration(min(trained.values()))
        known = sorted({n for n in threads.values() if n is not None})
        how = f"{'/'.join(map(str, known))} thread(s) a job" if known else "wall time"
        text = f"slowest {_duration(trained[slowest])} ({slowest}), fastest {fastest}, "
        text += f"{len(trained)} encoder(s), core-time / {TARGET_CORES} ({how}), as run"
        out.append(Verdict(name, None, text, bool(max(trained.values()) <= TRAIN_SECONDS)))
    else:
        out.append(Verdict(name, None, "no finished encoder", None))
    rates = {}
    for record in sorted(root.glob("benchmarks/infer_catalog/d*/seed*.tsv")):
        key = record.relative_to(root / "benchmarks/infer_catalog").with_suffix("")
        catalog = root / "catalogs" / key.with_suffix(".parquet")
        if catalog.is_file():
            seconds = float(pd.read_csv(record, sep="\t")["s"].iloc[-1])
            rates[key] = read_metadata(catalog)["n_images"] / seconds
    name = f"inference >= {INFER_IMAGES_PER_S:g} images/s, {TARGET_CORES} CPU cores"
    if rates:
        slowest = min(rates, key=rates.get)
        text = (
            f"slowest {rates[slowest]:.0f} images/s ({slowest}), fastest "
            f"{max(rates.values()):.0f}, whole catalog job, as run"
        )
        out.append(Verdict(name, None, text, bool(min(rates.values()) >= INFER_IMAGES_PER_S)))
    else:
        out.append(Verdict(name, None, "no catalog job record", None))
    return out


def _optional(path: Path, schema: pa.Schema, what: str) -> pd.DataFrame | None:
    """The table at `path`, or None when the run did not make it (its targets are not judged)."""
    return read_table(path, schema, what=what) if path.is_file() else None


def judge_run(root: str | os.PathLike) -> list[Verdict]:
    """Every target, judged from the results root `root` (results/NAME)."""
    root = Path(root)
    m = root / "metrics"
    metrics = read_metrics_table(m / "metrics.parquet", METRICS_SCHEMA)
    curves = _optional(m / "curves.parquet", CURVES_SCHEMA, "operating curves")
    reliability = _optional(m / "reliability.parquet", RELIABILITY_SCHEMA, "reliability table")
    loss = _optional(m / "loss_accounting.parquet", LOSS_SCHEMA, "loss table")
    bayes = _optional(m / "bayes_flux.parquet", BAYES_SCHEMA, "Bayes flux reference")
    crowded = _optional(m / "crowded_flux.parquet", CROWDED_SCHEMA, "crowded-field reference")
    return [
        *bins_against_sep(metrics, bin_curves(root, metrics, curves)),
        *deep_dimmest(metrics),
        *bright_recall(metrics),
        *single_exposure_curves(curves),
        *second_detections(loss),
        *flux_against_reference(metrics, bayes, "the Bayes reference"),
        *flux_against_reference(metrics, crowded, "the crowded-field reference"),
        *interval_coverage(metrics),
        *prob_reliability(reliability),
        *budget(root),
    ]


def verdict_table(verdicts: list[Verdict]) -> str:
    """Markdown: target, d, what was measured, met."""
    lines = ["| target | d | measured | met |", "|---|---|---|---|"]
    for v in verdicts:
        met = "n/a" if v.met is None else ("yes" if v.met else "**no**")
        lines.append(f"| {v.target} | {'all' if v.d is None else v.d} | {v.measured} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m coaddbliss.targets results/NAME`: print every target's verdict for a run."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root", type=Path, help="a finished run's results root (results/NAME)")
    args = parser.parse_args(argv)
    try:
        verdicts = judge_run(args.root)
    except InputError as err:
        parser.exit(1, f"error: {err}\n")
    print(verdict_table(verdicts))
    met = sum(v.met is True for v in verdicts)
    judged = sum(v.met is not None for v in verdicts)
    print(f"\n{met} of {judged} judged targets met ({args.root}).")


if __name__ == "__main__":
    main()
