"""Truth-to-tile assignment and the dihedral augmentation (docs/method.md §5)."""

import numpy as np
import pandas as pd
import pytest
import torch

from coaddbliss.tiles import (
    LOC_EPS,
    TileGrid,
    assign_tiles,
    augment_images,
    flip_targets,
    tile_centres_to_pixels,
)

GRID = TileGrid(24.0, 64.0, 4)


def catalog(rows):
    return pd.DataFrame(rows, columns=["image_id", "x", "y", "flux"])


def test_single_star_hand_computed():
    # x = 25.0 -> column 0, u_x = 0.25; y = 30.5 -> row 1 (tile y in [28, 32)), u_y = 0.625
    t = assign_tiles(catalog([(0, 25.0, 30.5, 1000.0)]), 1, GRID)
    assert t.on.shape == (1, 10, 10)
    assert t.on.sum() == 1 and t.on[0, 1, 0] == 1
    assert t.loc[0, 1, 0].tolist() == pytest.approx([0.25, 0.625])
    assert float(t.log_flux[0, 1, 0]) == pytest.approx(np.log(1000.0), rel=1e-6)
    assert t.n_dropped == 0


def test_two_stars_in_one_tile_keeps_the_brightest():
    rows = [(0, 41.0, 41.0, 700.0), (0, 42.0, 43.0, 9000.0), (0, 30.0, 30.0, 800.0)]
    t = assign_tiles(catalog(rows), 1, GRID)
    assert t.n_dropped == 1
    assert t.on.sum() == 2
    # both in tile (row 4, col 4) = [40, 44)^2: the 9000-count star wins
    assert t.loc[0, 4, 4].tolist() == pytest.approx([0.5, 0.75])
    assert float(t.log_flux[0, 4, 4]) == pytest.approx(np.log(9000.0), rel=1e-6)


def test_a_tile_of_capacity_two_keeps_the_two_brightest():
    rows = [(0, 41.0, 41.0, 700.0), (0, 42.0, 43.0, 9000.0), (0, 43.0, 40.5, 800.0),
            (0, 30.0, 30.0, 800.0), (1, 50.0, 50.0, 100.0)]  # fmt: skip
    t = assign_tiles(catalog(rows), 2, GRID, capacity=2)
    assert t.n_dropped == 1 and t.second.n_dropped == 1  # the 700-count star: a third
    assert t.on.sum() == 3 and t.second.on.sum() == 1
    assert t.loc[0, 4, 4].tolist() == pytest.approx([0.5, 0.75])  # 9000 counts first
    assert t.second.on[0, 4, 4] == 1
    assert t.second.loc[0, 4, 4].tolist() == pytest.approx([0.75, 0.125])  # then 800
    assert float(t.second.log_flux[0, 4, 4]) == pytest.approx(np.log(800.0), rel=1e-6)
    one = assign_tiles(catalog(rows), 2, GRID)  # capacity 1: the same first stars
    assert one.second is None and one.n_dropped == 2
    for name in ("on", "loc", "log_flux"):
        assert torch.equal(getattr(one, name), getattr(t, name))
    empty = assign_tiles(catalog([]), 2, GRID, capacity=2)
    assert empty.second.on.shape == (2, 10, 10) and empty.second.on.sum() == 0
    sub = t.subset(torch.tensor([1]))
    assert sub.second.on.shape == (1, 10, 10) and sub.on.sum() == 1
    with pytest.raises(ValueError, match="1 or 2 stars"):
        assign_tiles(catalog(rows), 2, GRID, capacity=3)


def test_stars_on_tile_edges():
    rows = [(0, 28.0, 24.0, 1e3), (0, 64.0, 64.0, 1e3)]  # left edge of col 1; far corner
    t = assign_tiles(catalog(rows), 1, GRID)
    assert t.on[0, 0, 1] == 1 and t.on[0, 9, 9] == 1
    assert t.loc[0, 0, 1].tolist() == pytest.approx([LOC_EPS, LOC_EPS])
    assert t.loc[0, 9, 9].tolist() == pytest.approx([1 - LOC_EPS, 1 - LOC_EPS])
    assert torch.isfinite(torch.logit(t.loc)).all()


def test_empty_images_and_empty_catalog():
    t = assign_tiles(catalog([(2, 50.0, 50.0, 1e4)]), 4, GRID)
    assert t.on.shape == (4, 10, 10)
    assert t.on[[0, 1, 3]].sum() == 0 and t.on[2].sum() == 1
    empty = assign_tiles(catalog([]), 3, GRID)
    assert empty.on.shape == (3, 10, 10) and empty.on.sum() == 0 and empty.n_dropped == 0


def test_star_outside_square_is_an_error():
    with pytest.raises(ValueError, match="outside the source square"):
        assign_tiles(catalog([(0, 20.0, 40.0, 1e3)]), 1, GRID)
    with pytest.raises(ValueError, match="image_id"):
        assign_tiles(catalog([(5, 40.0, 40.0, 1e3)]), 2, GRID)


def test_tile_grid_rejects_tiles_that_do_not_divide():
    with pytest.raises(ValueError):
        TileGrid(24.0, 64.0, 3)


def test_tile_centres_to_pixels_inverts_assignment():
    t = assign_tiles(catalog([(0, 37.3, 55.9, 1e3)]), 1, GRID)
    xy = tile_centres_to_pixels(GRID, t.loc)[0, 7, 3]
    assert xy.tolist() == pytest.approx([37.3, 55.9], abs=1e-5)


@pytest.mark.parametrize("fx,fy,tr", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
def test_flip_targets_matches_a_flipped_catalog(fx, fy, tr):
    # the frame is 88 px and the source square [24, 64) is centred: a flip maps x -> 88 - x
    rng = np.random.default_rng(1)
    xy = rng.uniform(24.5, 63.5, size=(6, 2))
    rows = [(i % 2, x, y, 1e3 * (i + 1)) for i, (x, y) in enumerate(xy)]
    rows.append((0, xy[0, 0] + 0.3, xy[0, 1] - 0.2, 500.0))  # a second star in star 0's tile
    flipped = []
    for i, x, y, f in rows:
        if tr:
            x, y = y, x
        if fx:
            x = 88.0 - x
        if fy:
            y = 88.0 - y
        flipped.append((i, x, y, f))
    expected = assign_tiles(catalog(flipped), 2, GRID, capacity=2)
    got = assign_tiles(catalog(rows), 2, GRID, capacity=2)
    got = flip_targets(got, bool(fx), bool(fy), bool(tr))
    assert expected.second.on.sum() >= 1  # the second star stayed in its tile
    for star, want in ((got, expected), (got.second, expected.second)):
        assert torch.equal(star.on, want.on)
        assert torch.allclose(star.loc, want.loc, atol=1e-5)
        assert torch.allclose(star.log_flux, want.log_flux)


def test_augment_images_moves_a_pixel_like_the_catalog():
    img = torch.zeros(1, 88, 88)
    img[0, 30, 50] = 1.0  # row 30 (y = 30.5), column 50 (x = 50.5)
    out = augment_images(img, flip_x=True, flip_y=False, transpose=True)
    # transpose: (x, y) -> (30.5, 50.5); flip x: x -> 88 - 30.5 = 57.5 -> column 57, row 50
    assert out[0, 50, 57] == 1.0 and out.sum() == 1.0
