"""The catalog prior against docs/method.md §4, fixed seeds: counts, centres, fluxes, magnitudes."""

import numpy as np
import pytest
import yaml
from conftest import REPO
from scipy import stats

from coaddbliss.prior import Prior, sample_truth
from coaddbliss.units import flux_to_mag, mag_to_flux

N_SCENES = 20000


@pytest.fixture(scope="module")
def prior() -> Prior:
    return Prior.from_config(yaml.safe_load((REPO / "config.yaml").read_text()))


@pytest.fixture(scope="module")
def truth(prior):
    return sample_truth(prior, "train", 7, N_SCENES)


def test_counts_follow_truncated_poisson(truth, prior):
    counts = np.bincount(truth["image_id"], minlength=N_SCENES)
    assert counts.max() <= prior.max_sources
    k = np.arange(prior.max_sources + 1)
    pmf = stats.poisson.pmf(k, prior.mean_sources)
    pmf /= pmf.sum()  # truncated at max_sources
    observed = np.bincount(counts, minlength=len(k))
    assert stats.chisquare(observed, pmf * N_SCENES).pvalue > 1e-3
    assert counts.mean() == pytest.approx((k * pmf).sum(), abs=0.05)


def test_centres_uniform_on_source_square(truth):
    for axis in ("x", "y"):
        values = truth[axis].to_numpy()
        assert values.min() >= 24 and values.max() < 64
        assert stats.kstest(values, stats.uniform(loc=24, scale=40).cdf).pvalue > 1e-3


def test_fluxes_follow_truncated_pareto(truth):
    f_min, f_max, alpha = 622.0, 1e6, 0.47

    def cdf(f):
        return (1 - (f_min / f) ** alpha) / (1 - (f_min / f_max) ** alpha)

    flux = truth["flux"].to_numpy()
    assert flux.min() >= f_min and flux.max() <= f_max
    assert stats.kstest(flux, cdf).pvalue > 1e-3
    # the KS test can fail: a plain Pareto (untruncated) is rejected on the same sample
    assert stats.kstest(flux, lambda f: 1 - (f_min / f) ** alpha).pvalue < 1e-3


def test_magnitude_zero_points():
    assert flux_to_mag(622.0) == pytest.approx(23.00, abs=0.005)
    assert flux_to_mag(1e6) == pytest.approx(14.99, abs=0.005)
    assert mag_to_flux(20.0) == pytest.approx(9873.1, rel=1e-4)
    assert mag_to_flux(flux_to_mag(1234.5)) == pytest.approx(1234.5)


def test_catalogs_depend_on_split_seed_and_scene_only(prior):
    a = sample_truth(prior, "test", 3, 50)
    b = sample_truth(prior, "test", 3, 80)  # more scenes: the first 50 are the same
    assert a.equals(b[b["image_id"] < 50].reset_index(drop=True))
    c = sample_truth(prior, "val", 3, 50)  # another split: another catalog
    assert not np.array_equal(a["x"].to_numpy()[:5], c["x"].to_numpy()[:5])
