"""Merging adjacent tiles that place one star: hand-built tile grids with known answers."""

import numpy as np
import pytest

from coaddbliss.tile_merge import merge_adjacent

TILE = 4.0  # pixels


def grid(k: int = 4, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Empty probabilities and every tile's star at its tile centre, (n, k, k) and (n, k, k, 2)."""
    col, row = np.meshgrid(np.arange(k), np.arange(k), indexing="xy")
    xy = np.stack([(col + 0.5) * TILE, (row + 0.5) * TILE], axis=-1)
    return np.zeros((n, k, k)), np.repeat(xy[None], n, axis=0)


def test_radius_zero_changes_nothing():
    prob, xy = grid()
    prob[0, 1, 1], prob[0, 1, 2] = 0.4, 0.45
    xy[0, 1, 1], xy[0, 1, 2] = (7.9, 6.0), (8.1, 6.0)  # one star on the shared edge x = 8
    assert np.array_equal(merge_adjacent(prob, xy, 0.0), prob)


def test_a_star_split_over_an_edge_becomes_one_detection():
    prob, xy = grid()
    prob[0, 1, 1], prob[0, 1, 2] = 0.4, 0.45  # neither passes 0.5 alone
    xy[0, 1, 1], xy[0, 1, 2] = (7.9, 6.0), (8.1, 6.2)
    merged = merge_adjacent(prob, xy, 1.0)
    assert merged[0, 1, 2] == pytest.approx(0.85)  # the more probable tile takes both
    assert merged[0, 1, 1] == 0.0
    assert (merged > 0.5).sum() == 1


def test_a_double_detection_is_capped_at_one():
    prob, xy = grid()
    prob[0, 2, 0], prob[0, 3, 1] = 0.9, 0.8  # diagonal neighbours, star on their shared corner
    xy[0, 2, 0], xy[0, 3, 1] = (3.9, 12.1), (4.2, 11.8)
    merged = merge_adjacent(prob, xy, 1.0)
    assert merged[0, 2, 0] == 1.0 and merged[0, 3, 1] == 0.0


def test_two_stars_in_adjacent_tiles_stay_two():
    prob, xy = grid()
    prob[0, 0, 0], prob[0, 0, 1] = 0.9, 0.8
    xy[0, 0, 0], xy[0, 0, 1] = (2.0, 2.0), (5.5, 2.0)  # 3.5 px apart on x
    assert np.array_equal(merge_adjacent(prob, xy, 1.5), prob)


def test_closeness_is_needed_on_both_axes():
    prob, xy = grid()
    prob[0, 1, 1], prob[0, 2, 1] = 0.6, 0.7
    xy[0, 1, 1], xy[0, 2, 1] = (6.0, 7.9), (8.0, 8.1)  # 0.2 px apart on y but 2 px on x
    assert np.array_equal(merge_adjacent(prob, xy, 1.5), prob)


def test_equal_probabilities_merge_once_into_the_earlier_tile():
    prob, xy = grid()
    prob[0, 1, 1], prob[0, 1, 2] = 0.3, 0.3
    xy[0, 1, 1], xy[0, 1, 2] = (7.9, 6.0), (8.1, 6.0)
    merged = merge_adjacent(prob, xy, 1.0)
    assert merged[0, 1, 1] == pytest.approx(0.6) and merged[0, 1, 2] == 0.0


def test_images_do_not_exchange_probability():
    prob, xy = grid(n=2)
    prob[0, 1, 1], prob[1, 1, 2] = 0.4, 0.45  # same tiles, different images
    xy[0, 1, 1], xy[1, 1, 2] = (7.9, 6.0), (8.1, 6.0)
    assert np.array_equal(merge_adjacent(prob, xy, 1.0), prob)


def test_pairs_conserve_probability_and_never_raise_a_tile_above_one():
    """Random grids of isolated pairs: total probability is kept unless a cap applies."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        prob, xy = grid(k=6)
        r, c = rng.integers(0, 6), rng.integers(0, 5)
        p = rng.uniform(0.01, 0.6, size=2)
        prob[0, r, c], prob[0, r, c + 1] = p
        xy[0, r, c] = ((c + 1) * TILE - 0.2, (r + 0.5) * TILE)
        xy[0, r, c + 1] = ((c + 1) * TILE + 0.2, (r + 0.5) * TILE)
        merged = merge_adjacent(prob, xy, 1.0)
        assert merged.sum() == pytest.approx(min(p.sum(), 1.0))
        assert (merged > 0).sum() == 1 and merged.max() <= 1.0
