"""The bright-star recovery measure behind 'it learns' (one-to-one matching within 1 px).

The matcher itself is `matching.match_catalogs`, the one the metrics use; without image count.
"""

import pandas as pd
import pytest

from coaddbliss.matching import match_catalogs
from coaddbliss.recovery import bright_recovery


def cat(rows, mags=None):
    df = pd.DataFrame(rows, columns=["image_id", "x", "y"])
    df["mag"] = mags if mags is not None else [20.0] * len(df)
    return df


def test_one_to_one_and_per_image():
    truth = cat([(0, 30.0, 30.0), (0, 30.5, 30.0), (1, 40.0, 40.0), (2, 50.0, 50.0)])
    # one detection between the two close stars of image 0 can match only one of them;
    # the image-1 detection is 1.2 px away in x (rejected); the image-2 one sits on image 3
    pred = cat([(0, 30.3, 30.0), (1, 41.2, 40.0), (3, 50.0, 50.0)])
    assert match_catalogs(truth, pred).true_matched.tolist() == [False, True, False, False]


def test_hungarian_beats_greedy():
    # greedy nearest would give star A the detection at 30.4 and leave B unmatched
    truth = cat([(0, 30.0, 30.0), (0, 30.9, 30.0)])
    pred = cat([(0, 30.45, 30.0), (0, 29.3, 30.0)])
    assert match_catalogs(truth, pred).true_matched.tolist() == [True, True]


def test_bright_recovery_counts_only_bright_truth():
    truth = cat([(0, 30.0, 30.0), (0, 50.0, 50.0), (1, 40.0, 40.0)], mags=[19.0, 22.5, 20.9])
    pred = cat([(0, 30.2, 29.9), (0, 50.0, 50.0)])
    frac, n = bright_recovery(truth, pred, mag_max=21.0)
    assert n == 2 and frac == pytest.approx(0.5)
