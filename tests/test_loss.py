"""The variational family and the FAVI loss against hand-computed values (docs/method.md §5)."""

import math

import numpy as np
import pytest
import torch

from coaddbliss.encoder import EncoderConfig, build_encoder
from coaddbliss.tiles import TileTruth
from coaddbliss.variational import (
    MAX_SD,
    MIN_SD,
    TileParams,
    constrain,
    favi_loss,
    logit_normal_moments,
    tile_nll,
)

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def two_tile_case():
    """One image, 1 x 2 tiles: tile 0 holds a star, tile 1 is empty."""
    params = TileParams(
        n_logit=torch.tensor([[[0.0, 2.0]]]),
        loc_mu=torch.tensor([[[[0.0, 0.0], [5.0, 5.0]]]]),
        loc_sd=torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]]),
        flux_mu=torch.tensor([[[math.log(1000.0), 0.0]]]),
        flux_sd=torch.tensor([[[0.5, 1.0]]]),
    )
    truth = TileTruth(
        on=torch.tensor([[[1.0, 0.0]]]),
        loc=torch.tensor([[[[0.5, 0.25], [0.5, 0.5]]]]),
        log_flux=torch.tensor([[[math.log(1000.0), 0.0]]]),
        n_dropped=0,
    )
    return params, truth


def test_loss_equals_hand_computed_value():
    params, truth = two_tile_case()
    # tile 0: q(n=1) = sigmoid(0) = 1/2
    log_qn0 = math.log(0.5)
    # u_x = 1/2: logit 0, density N(0; 0, 1) / (u (1 - u)) = N(0) * 4
    log_qx = -LOG_SQRT_2PI + math.log(4.0)
    # u_y = 1/4: logit = -ln 3, Jacobian 1 / (1/4 * 3/4)
    log_qy = -0.5 * math.log(3.0) ** 2 - LOG_SQRT_2PI - math.log(0.25) - math.log(0.75)
    # ln f at its mean, sd 0.5: N = 1 / (0.5 sqrt(2 pi)); density of f divides by f = 1000
    log_qf = -math.log(0.5) - LOG_SQRT_2PI - math.log(1000.0)
    # tile 1 empty: q(n=0) = 1 - sigmoid(2) = 1 / (1 + e^2); its loc/flux do not count
    log_qn1 = -math.log(1.0 + math.exp(2.0))
    expected = -(log_qn0 + log_qx + log_qy + log_qf + log_qn1)
    assert float(favi_loss(params, truth)) == pytest.approx(expected, rel=1e-5)
    per_tile = tile_nll(params, truth)[0, 0]
    assert float(per_tile[1]) == pytest.approx(-log_qn1, rel=1e-5)


def test_loss_is_a_mean_over_images():
    params, truth = two_tile_case()
    stack = lambda t: torch.cat([t, t], 0)  # noqa: E731
    params2 = TileParams(*(stack(getattr(params, f)) for f in params.__dataclass_fields__))
    truth2 = TileTruth(stack(truth.on), stack(truth.loc), stack(truth.log_flux), 0)
    assert float(favi_loss(params2, truth2)) == pytest.approx(float(favi_loss(params, truth)))


def test_empty_tiles_ignore_location_even_if_extreme():
    # an off tile whose target loc is 0 (logit = -inf) must give finite loss and gradients
    raw = torch.zeros(1, 7, 1, 1, requires_grad=True)
    truth = TileTruth(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1), 0)
    loss = favi_loss(constrain(raw), truth)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    assert float(loss.detach()) == pytest.approx(math.log(2.0), rel=1e-6)


def test_parameters_stay_in_range():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(4, 7, 10, 10, generator=g) * 1e4
    p = constrain(raw, flux_offset=8.0)
    for sd in (p.loc_sd, p.flux_sd):
        assert (sd >= MIN_SD).all() and (sd <= MAX_SD).all()
    assert ((p.prob >= 0) & (p.prob <= 1)).all()
    assert torch.isfinite(p.flux_mu).all() and torch.isfinite(p.loc_mu).all()


def test_flux_offset_shifts_the_flux_mean():
    raw = torch.zeros(1, 7, 2, 2)
    assert torch.allclose(constrain(raw, flux_offset=8.0).flux_mu, torch.full((1, 2, 2), 8.0))


def test_gradients_reach_every_layer():
    model = build_encoder(EncoderConfig(), seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 56, 56, generator=g)
    on = (torch.rand(3, 10, 10, generator=g) < 0.2).float()
    truth = TileTruth(on, torch.rand(3, 10, 10, 2, generator=g) * 0.8 + 0.1,
                      torch.full((3, 10, 10), 9.0), 0)  # fmt: skip
    favi_loss(model.tile_params(x), truth).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_logit_normal_moments():
    mean, sd = logit_normal_moments(np.array([0.0, 1.0]), np.array([1e-6, 1e-6]))
    assert mean == pytest.approx([0.5, 1 / (1 + math.exp(-1))], rel=1e-6)
    assert sd == pytest.approx([0.25e-6, 0.19661193e-6], rel=1e-3)  # delta method u (1 - u) s
    rng = np.random.default_rng(0)
    z = rng.normal(0.7, 1.3, size=400_000)
    s = 1 / (1 + np.exp(-z))
    mean, sd = logit_normal_moments(np.array(0.7), np.array(1.3))
    assert float(mean) == pytest.approx(s.mean(), abs=2e-3)
    assert float(sd) == pytest.approx(s.std(), abs=2e-3)
