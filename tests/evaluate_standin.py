"""Stand-in upstream outputs for the evaluation tests: truth, cubes, catalogs, limits.

Cheap, deterministic imitations of what the simulator, the encoder, SEP and the limits rule
write (same schemas and paths, SPEC §8), so evaluation and figures can be exercised before (and
independently of) the real stages. Not a simulator: noise is white Gaussian.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coaddbliss.catalog import write_catalog
from coaddbliss.images import write_cube
from coaddbliss.prior import Prior, sample_truth
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.units import mag_to_flux

PSF_CONFIG = {
    "sigma1": 1.4899639,
    "sigma2": 2.9940381,
    "sigmap": 2.8922856,
    "beta": 3.2637990,
    "b": 0.049229424,
    "p0": 0.010495156,
}
PRIOR_CONFIG = {
    "prior": {
        "mean_sources": 3.0,
        "max_sources": 8,
        "flux_min": 622.0,
        "flux_max": 1.0e6,
        "alpha": 0.47,
    },
    "image": {"size": 88, "source_lo": 24, "source_hi": 64, "pad": 1},
}
B = 865.0


def stand_in_truth(n_images: int, seed: int = 2022) -> pd.DataFrame:
    """A truth catalog drawn from the project's prior."""
    return sample_truth(Prior.from_config(PRIOR_CONFIG), "test", seed, n_images)


def render(truth: pd.DataFrame, n_images: int, d: int, seed: int) -> np.ndarray:
    """(N, 88, 88) counts: stars through the PSF, background B, white noise of a depth-d coadd."""
    psf = PSF(PSFParams.from_config(PSF_CONFIG))
    centres = np.arange(88) + 0.5  # pixel centres, SPEC §2 frame
    rng = np.random.default_rng(seed + d)
    cube = np.full((n_images, 88, 88), B)
    for row in truth.itertuples():
        r = np.hypot(centres[None, :] - row.x, centres[:, None] - row.y)
        cube[row.image_id] += row.flux * psf.profile(r)
    # ~0.45 B / d per-pixel variance of a physical coadd (SPEC §4); d = 1 is plain Poisson ~ B.
    var = cube if d == 1 else 0.45 * cube / d
    return (cube + np.sqrt(var) * rng.normal(size=cube.shape)).astype(np.float32)


def predicted(truth: pd.DataFrame, d: int, seed: int, *, with_sd: bool = True) -> pd.DataFrame:
    """A fake detector: misses faint stars (less at larger d), jitters, adds spurious sources."""
    rng = np.random.default_rng(1000 * d + seed)
    snr = 5.0 * np.sqrt(d) * 10 ** (-0.4 * (truth["mag"].to_numpy() - 22.5))
    keep = rng.uniform(size=len(truth)) < 1 / (1 + np.exp(-(snr - 4.0)))
    t = truth[keep]
    sd_loc = np.clip(1.0 / snr[keep], 0.02, 0.6)
    sd_log = np.clip(1.0 / snr[keep], 0.005, 0.5)
    pred = pd.DataFrame(
        {
            "image_id": t["image_id"].to_numpy(),
            "x": t["x"].to_numpy() + sd_loc * rng.normal(size=len(t)),
            "y": t["y"].to_numpy() + sd_loc * rng.normal(size=len(t)),
            "flux": t["flux"].to_numpy() * np.exp(sd_log * rng.normal(size=len(t))),
        }
    )
    n_images = int(truth["image_id"].max()) + 1 if len(truth) else 1
    n_fake = rng.poisson(0.3 / d * n_images)
    fake = pd.DataFrame(
        {
            "image_id": rng.integers(0, n_images, n_fake),
            "x": rng.uniform(24, 64, n_fake),
            "y": rng.uniform(24, 64, n_fake),
            "flux": mag_to_flux(rng.uniform(22.0, 23.0, n_fake)),
        }
    )
    pred = pd.concat([pred, fake], ignore_index=True)
    pred["prob"] = 0.9
    pred["x_sd"] = np.r_[sd_loc, np.full(n_fake, 0.5)] if with_sd else np.nan
    pred["y_sd"] = pred["x_sd"]
    pred["log_flux_sd"] = np.r_[sd_log, np.full(n_fake, 0.5)] if with_sd else np.nan
    pred["mag"] = 0.0  # recomputed by write_catalog
    return pred.astype({"image_id": np.int64})


def limits_table(depths) -> pd.DataFrame:
    """Rough stand-in physical limits (SPEC §7 shape, not the real calculation)."""
    mag = np.round(np.arange(20.0, 23.0001, 0.05), 2)
    rows = []
    for d in depths:
        f = mag_to_flux(mag)
        snr = np.sqrt(d * f**2 * 0.0256 / (B + f * 0.055))
        rows.append(
            pd.DataFrame(
                {
                    "d": d,
                    "mag": mag,
                    "recall_limit": 1 - np.exp(-((snr / 5) ** 8)),
                    "flux_err_limit": 1 / snr,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def write_standin_results(root: Path, n_images: int, depths, seeds, *, sep: bool = True) -> None:
    """Write results/data/test/{truth.parquet, d{d}.fits}, encoder (+ SEP) catalogs under root."""
    results = Path(root) / "results"
    truth = stand_in_truth(n_images)
    write_catalog(truth, results / "data/test/truth.parquet", kind="truth")
    for d in depths:
        cube = render(truth, n_images, d, seed=1)
        write_cube(
            results / f"data/test/d{d}.fits",
            [cube],
            n_images=n_images,
            image_shape=(88, 88),
            cards={"D": d, "BKG": B, "SPLIT": "test"},
        )
        for seed in seeds:
            write_catalog(
                predicted(truth, d, seed),
                results / f"catalogs/d{d}/seed{seed}.parquet",
                kind="predicted",
                metadata={"seed": seed},
            )
        if sep:
            write_catalog(
                predicted(truth, d, 99, with_sd=False),
                results / f"baselines/sep/d{d}.parquet",
                kind="predicted",
            )


#: Upstream rules whose outputs the stand-in fakes: stubs that fail if ever asked to run.
STUB_RULES = {
    "simulate_images": 'cube="results/data/test/d{d}.fits"',
    "infer_catalog": 'catalog="results/catalogs/d{d}/seed{seed}.parquet"',
    "baseline_sep": 'catalog="results/baselines/sep/d{d}.parquet"',
    "physical_limits": 'table="results/metrics/limits.parquet"',
}
#: A Snakefile of the evaluation stages alone, fed by the stand-in files and the stubs.
STANDIN_SNAKEFILE = """\
configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/standin.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        evaluate_targets(),
        figures_targets(),
"""


def make_standin_workdir(repo: Path, dest: Path, config: dict) -> None:
    """A directory with the repository's evaluation stages, stand-in upstream files and a
    Snakefile of its own (the real upstream stages are left out: they would want to rerun)."""
    import shutil

    import yaml

    for name in ("workflow", "src", "envs"):
        shutil.copytree(repo / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "config").mkdir()
    for path in (dest / "config.yaml", dest / "config/demo.yaml"):
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    depths, seeds = config["simulate"]["depths"], config["data"]["train_seeds"]
    write_standin_results(dest, config["data"]["test_scenes"], depths, seeds)
    (dest / "results/metrics").mkdir(parents=True, exist_ok=True)
    limits_table(depths).to_parquet(dest / "results/metrics/limits.parquet")
    stubs = [
        f'rule {name}:\n    output:\n        {output},\n    shell:\n        "exit 1"\n'
        for name, output in STUB_RULES.items()
    ]
    templates = (
        'TRUTH_CATALOG = "results/data/{dataset}/truth.parquet"\n'
        'IMAGE_CUBE = "results/data/{dataset}/d{d}.fits"\n\n\n'
    )
    (dest / "workflow/rules/standin.smk").write_text(templates + "\n\n".join(stubs))
    (dest / "Snakefile").write_text(STANDIN_SNAKEFILE)


def has_rule(repo: Path, name: str) -> bool:
    """Whether some .smk file of the repository defines rule `name`."""
    return any(f"rule {name}:" in p.read_text() for p in (repo / "workflow/rules").glob("*.smk"))
