"""Symmetry averaging: looks mapped back onto the image's tiles, and an exactly equivariant
average whatever the network."""

import math

import numpy as np
import pytest
import torch
from test_infer import SMALL, constant_checkpoint

from coaddbliss.checkpoint import load_encoder, save_checkpoint
from coaddbliss.encoder import build_encoder
from coaddbliss.infer import predict_batch
from coaddbliss.symmetry import (
    LOOKS,
    SYMMETRY_COUNTS,
    average_params,
    transform_images,
    untransform_params,
)
from coaddbliss.tiles import TileTruth, flip_targets
from coaddbliss.train import TrainConfig
from coaddbliss.variational import TileParams

CPU = torch.device("cpu")
FRAME = 88  # test images' side, px (the encoder's crop is centred in it)


def random_params(g: torch.Generator, n: int = 3, k: int = 5) -> TileParams:
    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return TileParams(r(n, k, k), r(n, k, k, 2), r(n, k, k, 2).abs(), r(n, k, k), r(n, k, k).abs())


@pytest.mark.parametrize("look", LOOKS)
def test_untransform_inverts_the_training_augmentation(look):
    # flip_targets is training's own map of a tile grid under a look (tested with the truth
    # catalogs); untransform_params must undo it, tile by tile and component by component
    original = random_params(torch.Generator().manual_seed(3))
    transpose, flip_x, flip_y = look
    as_truth = TileTruth(original.n_logit, torch.sigmoid(original.loc_mu), original.flux_mu, 0)
    seen = flip_targets(as_truth, flip_x, flip_y, transpose)
    sd_seen = flip_targets(TileTruth(original.n_logit, original.loc_sd, original.flux_sd, 0),
                           flip_x, flip_y, transpose)  # fmt: skip
    # flip_targets maps a location u -> 1 - u; an sd only moves with its tile and component
    sd_seen = sd_seen.loc.clone()
    for axis, flipped in ((0, flip_x), (1, flip_y)):
        if flipped:
            sd_seen[..., axis] = 1 - sd_seen[..., axis]
    looked = TileParams(seen.on, torch.logit(seen.loc), sd_seen, seen.log_flux,
                        seen.log_flux * 0 + 1)  # fmt: skip
    back = untransform_params(looked, look)
    torch.testing.assert_close(back.n_logit, original.n_logit)
    torch.testing.assert_close(back.loc_mu, original.loc_mu)
    torch.testing.assert_close(back.loc_sd, original.loc_sd)
    torch.testing.assert_close(back.flux_mu, original.flux_mu)


@pytest.mark.parametrize("count", SYMMETRY_COUNTS)
def test_each_count_of_looks_is_a_group(count):
    # a look applied after any other of the set lands on a look of the set: the average over
    # the set then treats every look of the image alike
    image = torch.arange(36.0).reshape(6, 6)
    seen = {tuple(transform_images(image, look).flatten().tolist()) for look in LOOKS[:count]}
    assert len(seen) == count
    for a in LOOKS[:count]:
        for b in LOOKS[:count]:
            both = transform_images(transform_images(image, a), b)
            assert tuple(both.flatten().tolist()) in seen


def test_the_average_of_a_network_blind_to_the_image_is_the_tile_centre(tmp_path):
    # every tile says u = sigmoid(1) on both axes, whatever the image: the eight looks mapped
    # back put the star at 1 - u as often as at u, so their average logit is 0, the centre
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=2.0, loc_mu=(1.0, 1.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    enc = load_encoder(ckpt)
    images = np.full((2, FRAME, FRAME), 865.0 * 5, dtype=np.float32)
    one = predict_batch(enc, images, 0, 0.5, CPU)
    eight = predict_batch(enc, images, 0, 0.5, CPU, symmetries=8)
    assert len(one) == len(eight) == 2 * 100
    assert ((one.x - 24) % 4).to_numpy() == pytest.approx(4 / (1 + math.exp(-1.0)), abs=1e-5)
    assert ((eight.x - 24) % 4).to_numpy() == pytest.approx(2.0, abs=1e-5)
    assert ((eight.y - 24) % 4).to_numpy() == pytest.approx(2.0, abs=1e-5)
    # what every look agrees on is kept
    assert eight.prob.to_numpy() == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-6)
    assert eight.flux.to_numpy() == pytest.approx(5000.0, rel=1e-5)


def to_frame(x: np.ndarray, y: np.ndarray, look) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a look of the frame mapped back to the frame (centres at .5)."""
    transpose, flip_x, flip_y = look
    if flip_y:
        y = FRAME - y
    if flip_x:
        x = FRAME - x
    return (y, x) if transpose else (x, y)


@pytest.mark.parametrize("count", [4, 8])
def test_the_averaged_catalog_of_a_look_is_that_look_of_the_catalog(tmp_path, count):
    # a randomly initialised encoder is not equivariant; its average over a group of looks is,
    # exactly: cataloguing a look of the images gives the images' catalog, seen from that look
    model = build_encoder(SMALL, 5)
    path = tmp_path / "random.pt"
    save_checkpoint(path, state_dict=model.state_dict(), encoder_config=SMALL,
                    train_config=TrainConfig().as_dict(), data={"depth": 5, "background": 865.0},
                    seed=5, epoch=1, val_loss=0.0)  # fmt: skip
    enc = load_encoder(path)
    rng = np.random.default_rng(8)
    images = (865.0 + 13.0 * rng.standard_normal((3, FRAME, FRAME))).astype(np.float32)
    images[:, 40:44, 30:33] += 400.0  # something for the network to look at
    columns = ["image_id", "x", "y", "flux", "prob", "log_flux_sd"]

    def by_tile(cat):  # rows in tile order: (image, tile row, tile column)
        row, col = (np.floor((cat[c] - 24) / 4) for c in ("y", "x"))
        return cat.assign(row=row, col=col).sort_values(
            ["image_id", "row", "col"], ignore_index=True
        )[columns]

    base = by_tile(predict_batch(enc, images, 0, 0.0, CPU, symmetries=count)[columns])
    for look in LOOKS[1:count]:
        seen = transform_images(torch.from_numpy(images), look).contiguous().numpy()
        cat = predict_batch(enc, seen, 0, 0.0, CPU, symmetries=count)[columns]
        x, y = to_frame(cat.x.to_numpy(), cat.y.to_numpy(), look)
        cat = by_tile(cat.assign(x=x, y=y))
        assert len(cat) == len(base) == 3 * 100
        for c in columns:
            np.testing.assert_allclose(cat[c], base[c], rtol=1e-4, atol=1e-4, err_msg=c)


def test_one_look_is_the_network_itself():
    p = random_params(torch.Generator().manual_seed(1))
    assert average_params([p]) is p
