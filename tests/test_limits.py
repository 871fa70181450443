"""Physical limits: the table of docs/method.md §7, analytic special cases, the Parquet contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from coaddbliss.limits import (
    LIMITS_SCHEMA,
    detection_statistic,
    false_positives_per_region,
    fisher_snr,
    ideal_recall,
    mag_grid,
    physical_limits,
    psf_pixel_fractions,
    write_limits,
)
from coaddbliss.psf import PSF, PSFParams

B = 865.0

# docs/method.md §7: mag -> (SNR d=1, SNR d=25, recall d=1, recall d=25, flux err d=1, d=25)
REFERENCE_TABLE = {
    20.0: (45, 227, 1.00, 1.00, 0.022, 0.0044),
    22.0: (8.3, 41, 1.00, 1.00, 0.12, 0.024),
    22.5: (5.3, 26, 0.65, 1.00, 0.19, 0.038),
    23.0: (3.4, 17, 0.06, 1.00, 0.30, 0.060),
}


@pytest.fixture(scope="module")
def psf() -> PSF:
    return PSF(
        PSFParams(
            sigma1=1.4899639, sigma2=2.9940381, sigmap=2.8922856,
            beta=3.2637990, b=0.049229424, p0=0.010495156,
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def table(psf):
    mags = np.array(sorted(REFERENCE_TABLE))
    df = physical_limits(psf, depths=[1, 25], mags=mags, background=B, threshold=5.0)
    return df.set_index(["d", "mag"])


@pytest.mark.parametrize("mag", sorted(REFERENCE_TABLE))
def test_reproduces_spec_table(table, mag):
    snr1, snr25, rec1, rec25, err1, err25 = REFERENCE_TABLE[mag]
    for d, snr, rec, err in [(1, snr1, rec1, err1), (25, snr25, rec25, err25)]:
        row = table.loc[(d, mag)]
        assert row["snr"] == pytest.approx(snr, rel=0.02)
        assert row["flux_err_limit"] == pytest.approx(err, rel=0.02)
        # The table prints recall to 2 decimals: 2 % relative, or the rounding half-step.
        assert abs(row["recall_limit"] - rec) <= max(0.02 * rec, 0.005)


def test_background_limited_star_is_analytic(psf):
    """A faint star (f P << B): SNR -> f sqrt(d Σ P² / B), sd of the statistic -> 1."""
    pixels = psf_pixel_fractions(psf)
    s2 = psf.sum_squared()
    assert s2 == pytest.approx(0.0256, rel=0.01)  # docs/method.md §3: noise-equivalent area ~39 px
    f = 1.0  # one count: source noise negligible
    for d in (1, 4, 25):
        assert fisher_snr(f, d, B, pixels)[0] == pytest.approx(math.sqrt(d * s2 / B), rel=1e-3)
        mean, sd = detection_statistic(f, d, B, pixels)
        assert mean[0] == pytest.approx(math.sqrt(d * s2 / B), rel=1e-9)
        assert sd[0] == pytest.approx(1.0, abs=1e-4)


def test_snr_scales_as_sqrt_depth(psf):
    pixels = psf_pixel_fractions(psf)
    f = np.array([700.0, 5000.0, 5e5])
    assert fisher_snr(f, 16, B, pixels) == pytest.approx(4 * fisher_snr(f, 1, B, pixels))


def test_source_limited_star_is_poisson(psf):
    """A very bright star (f P >> B): Fisher info -> Σ P / f, so σ_f / f -> 1 / sqrt(f)."""
    pixels = psf_pixel_fractions(psf)
    f = 1e12
    assert 1 / fisher_snr(f, 1, 0.0 + 1e-9, pixels)[0] == pytest.approx(
        1 / math.sqrt(f * pixels.sum()), rel=1e-6
    )


def test_recall_at_threshold_is_one_half_for_a_faint_star(psf):
    """Mean statistic exactly at the threshold (and sd ~ 1): recall 0.5."""
    pixels = psf_pixel_fractions(psf)
    s2 = float((pixels**2).sum())
    f = 5.0 / math.sqrt(s2 / B)  # ~920 counts
    _, sd = detection_statistic(f, 1, B, pixels)
    assert ideal_recall(f, 1, B, 5.0, pixels)[0] == pytest.approx(0.5, abs=1e-9)
    # Far from the threshold the Gaussian tail applies: mean two (widened) sigmas above.
    f2 = (5.0 + 2.0 * sd[0]) / math.sqrt(s2 / B)
    assert ideal_recall(f2, 1, B, 5.0, pixels)[0] == pytest.approx(norm.cdf(2.0), abs=2e-3)


def test_false_positive_rate_matches_spec():
    """docs/method.md §7: ~4e-4 noise peaks above 5 sigma per 40 x 40 region."""
    assert false_positives_per_region(5.0, 40 * 40) == pytest.approx(4.6e-4, rel=0.02)


def test_mag_grid_is_inclusive_and_even():
    grid = mag_grid(20.0, 23.0, 0.05)
    assert len(grid) == 61 and grid[0] == 20.0 and grid[-1] == 23.0
    assert np.allclose(np.diff(grid), 0.05)


def test_limits_roundtrip(tmp_path, psf):
    import pyarrow.parquet as pq

    df = physical_limits(psf, depths=[1, 5], mags=mag_grid(20, 23, 0.5), background=B, threshold=5)
    path = tmp_path / "limits.parquet"
    write_limits(df, path, metadata={"threshold": 5.0})
    back = pq.read_table(path)
    assert back.schema.equals(LIMITS_SCHEMA, check_metadata=False)
    assert back.num_rows == 14 and set(back["d"].to_pylist()) == {1, 5}
    # Deeper is never worse; recall never falls as stars brighten.
    out = back.to_pandas()
    for _, g in out.groupby("d"):
        assert (np.diff(g.sort_values("mag")["recall_limit"]) <= 1e-12).all()
    assert not list(tmp_path.glob(".*partial*"))


def test_mag_grid_rejects_a_bad_range():
    with pytest.raises(ValueError, match="limits.mag_max"):
        mag_grid(23.0, 20.0, 0.05)


def test_rule_script_writes_the_table(tmp_path):
    """workflow/scripts/physical_limits.py with the shipped config: one row per (d, mag)."""
    import importlib.util

    import pyarrow.parquet as pq
    import yaml
    from conftest import REPO

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    spec = importlib.util.spec_from_file_location(
        "physical_limits", REPO / "workflow/scripts/physical_limits.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "limits.parquet"
    script.main(
        psf=config["psf"],
        background=config["survey"]["background"],
        depths=config["simulate"]["depths"],
        limits=config["limits"],
        threshold=config["baseline"]["threshold"],
        table=str(out),
    )
    table = pq.read_table(out).to_pandas()
    n_mags = len(mag_grid(**{k: config["limits"][k] for k in ("mag_min", "mag_max")},
                          step=config["limits"]["mag_step"]))  # fmt: skip
    assert len(table) == len(config["simulate"]["depths"]) * n_mags
    assert sorted(table["d"].unique()) == sorted(config["simulate"]["depths"])
    assert table["d"].dtype == np.int64
    # deeper is never worse
    wide = table.pivot(index="mag", columns="d", values="flux_err_limit")
    assert (wide.diff(axis=1).iloc[:, 1:] < 0).all().all()
