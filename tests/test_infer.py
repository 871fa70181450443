"""Inference: catalog columns from known network outputs, batching, and clear errors."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from encoder_data import make_split

from coaddbliss import infer as infer_module
from coaddbliss import residual_passes as residual_module
from coaddbliss.calibration import CalibrationError, write_calibration
from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.checkpoint import CheckpointError, load_encoder, save_checkpoint
from coaddbliss.encoder import EncoderConfig, build_encoder
from coaddbliss.flux_fit import FluxPrior
from coaddbliss.images import (
    CubeWriter,
    ImageCubeError,
    read_cube,
    read_extension,
    write_cube,
)
from coaddbliss.infer import InferConfig, infer_catalog, inference_plan
from coaddbliss.psf import PSF, PSFParams, write_psf_fits
from coaddbliss.train import TrainConfig

SMALL = EncoderConfig(stem_channels=8, width=16, n_blocks=1)
CPU = torch.device("cpu")


def constant_checkpoint(path, *, n_logit, loc_mu, loc_raw_sd, log_flux, depth=5, enc=SMALL,
                        second=None):  # fmt: skip
    """A checkpoint whose every tile outputs the same parameters (last layer: bias only);
    `second`: the second head's (n_logit, loc_mu, log_flux) for a two-star family."""
    model = build_encoder(enc, 0)
    last = model.head[-1]
    bias = [n_logit, loc_mu[0], loc_mu[1], loc_raw_sd, loc_raw_sd, log_flux - enc.flux_offset, 0.0]
    if second is not None:
        n2, mu2, flux2 = second
        bias += [n2, mu2[0], mu2[1], loc_raw_sd, loc_raw_sd, flux2 - enc.flux_offset, 0.0]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(bias))
    save_checkpoint(path, state_dict=model.state_dict(), encoder_config=enc,
                    train_config=TrainConfig().as_dict(),
                    data={"depth": depth, "background": 865.0}, seed=0, epoch=1,
                    val_loss=0.0)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("test_split"), n_images=7, depth=5, seed=4)[0]


def infer(ckpt, cube, out, batch_size=100, enc=SMALL):
    return infer_catalog(checkpoint=str(ckpt), cube=str(cube), out=str(out),
                         infer_config=InferConfig(batch_size=batch_size, threshold=0.5),
                         encoder_config=enc, seed=11, device=CPU)  # fmt: skip


def test_every_tile_on_gives_tile_centres_and_posterior_scales(tmp_path, cube):
    # raw sd 0 -> softplus(0) + 1e-3 = ln 2 + 1e-3 (logit scale); u = sigmoid(0.0) = 1/2
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    infer(ckpt, cube, tmp_path / "cat.parquet")
    cat = read_catalog(tmp_path / "cat.parquet", kind="predicted", n_images=7)
    assert len(cat) == 7 * 100
    assert sorted(set(cat["x"].round(6))) == pytest.approx([24 + 4 * c + 2 for c in range(10)])
    assert cat["flux"].to_numpy() == pytest.approx(5000.0, rel=1e-5)
    assert cat["prob"].to_numpy() == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-5)
    # small logit sd s = softplus(-6) + 1e-3: sd(u) ~ u (1 - u) s = s / 4; in pixels x 4 = s
    s = math.log1p(math.exp(-6.0)) + 1e-3
    assert cat["x_sd"].to_numpy() == pytest.approx(s, rel=1e-3)
    assert cat["log_flux_sd"].to_numpy() == pytest.approx(math.log(2) + 1e-3, rel=1e-4)
    meta = read_metadata(tmp_path / "cat.parquet")
    assert meta["seed"] == 11 and meta["depth"] == 5 and meta["n_images"] == 7
    assert "version" in meta and meta["encoder"] == SMALL.as_dict()


def test_two_star_tiles_give_a_second_row_with_the_joint_probability(tmp_path, cube):
    # q(n >= 1) = sigmoid(3); q(n = 2 | n >= 1) = sigmoid(1); the second star at u = sigmoid(-1)
    enc = dataclasses.replace(SMALL, tile_capacity=2)
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0), enc=enc,
                               second=(1.0, (-1.0, 1.0), math.log(800.0)))  # fmt: skip
    cat = infer(ckpt, cube, tmp_path / "cat.parquet", batch_size=3, enc=enc)
    assert len(cat) == 7 * 200 and (np.diff(cat["image_id"]) >= 0).all()
    second = cat[cat["flux"] < 1000]
    assert len(second) == 7 * 100
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert second["prob"].to_numpy() == pytest.approx(sig(3.0) * sig(1.0), rel=1e-5)
    assert second["flux"].to_numpy() == pytest.approx(800.0, rel=1e-5)
    offsets = {(round((x - 24) % 4, 5), round((y - 24) % 4, 5))
               for x, y in second[["x", "y"]].to_numpy()}  # fmt: skip
    assert offsets == {(round(4 * sig(-1.0), 5), round(4 * sig(1.0), 5))}
    # a second star below the threshold is no row: q(n = 2) = sigmoid(3) sigmoid(-1) < 0.5
    ckpt = constant_checkpoint(tmp_path / "c2.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0), enc=enc,
                               second=(-1.0, (0.0, 0.0), math.log(800.0)))  # fmt: skip
    assert len(infer(ckpt, cube, tmp_path / "cat2.parquet", enc=enc)) == 7 * 100


def test_off_tiles_give_an_empty_catalog(tmp_path, cube):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=-3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    infer(ckpt, cube, tmp_path / "cat.parquet")
    assert len(read_catalog(tmp_path / "cat.parquet", kind="predicted", n_images=7)) == 0


def test_empty_catalog_is_a_warning_in_the_log(tmp_path, cube, caplog):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=-3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    infer(ckpt, cube, tmp_path / "cat.parquet")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{cube}: no detections in any of its 7 images (blank scenes?)"]


def test_nan_pixel_stops_inference_with_the_file_named(tmp_path, cube):
    from astropy.io import fits

    bad = tmp_path / "d5.fits"
    bad.write_bytes(cube.read_bytes())
    with fits.open(bad, mode="update") as hdul:
        hdul[0].data[5, 44, 44] = np.nan  # one pixel once blanked the image's detections
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    with pytest.raises(ImageCubeError, match=r"d5\.fits: 1 non-finite pixel.*first: image 5"):
        infer(ckpt, bad, tmp_path / "cat.parquet", batch_size=2)
    assert not list(tmp_path.glob("*cat.parquet*"))


def test_batches_do_not_change_the_catalog(tmp_path, cube):
    model = build_encoder(SMALL, 5)
    save_checkpoint(tmp_path / "c.pt", state_dict=model.state_dict(), encoder_config=SMALL,
                    train_config=TrainConfig().as_dict(), data={"depth": 5, "background": 865.0},
                    seed=0, epoch=1, val_loss=0.0)  # fmt: skip
    a = infer(tmp_path / "c.pt", cube, tmp_path / "a.parquet", batch_size=3)
    b = infer(tmp_path / "c.pt", cube, tmp_path / "b.parquet", batch_size=100)
    assert a["image_id"].tolist() == b["image_id"].tolist()
    assert np.allclose(a[["x", "y", "flux", "prob"]], b[["x", "y", "flux", "prob"]], rtol=1e-4)


def test_corrupt_checkpoint(tmp_path, cube):
    bad = tmp_path / "encoder.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="encoder.pt: not a readable"):
        infer(bad, cube, tmp_path / "cat.parquet")
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="not a coaddbliss checkpoint"):
        load_encoder(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "missing.pt")
    assert not (tmp_path / "cat.parquet").exists()


def test_a_checkpoint_older_than_a_new_encoder_key_is_the_default_network(tmp_path, cube):
    """A checkpoint written before `square_channel` existed stores no such key: it is the
    network that key's default builds, so it catalogs under a config that keeps the default
    and is refused under one that changes it."""
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=8.0)  # fmt: skip
    stored = torch.load(ckpt, weights_only=True)
    del stored["encoder_config"]["square_channel"]
    torch.save(stored, ckpt)
    assert len(infer(ckpt, cube, tmp_path / "cat.parquet")) == 7 * 100
    with pytest.raises(CheckpointError, match="square_channel"):
        infer(ckpt, cube, tmp_path / "cat2.parquet",
              enc=dataclasses.replace(SMALL, square_channel=True))  # fmt: skip


def write_map(path, raw, prob, depth=5, seed=1):
    table = pd.DataFrame({"mag_lo": -np.inf, "mag_hi": np.inf,
                          "prob_lo": 0.0, "prob_hi": 1.0, "n_detected": 10, "n_matched": 5,
                          "mean_raw": raw, "calibrated": prob})  # fmt: skip
    write_calibration(table, path, {"location": 0.5, "log_flux": 2.0},
                      {"depth": depth, "seed": seed})  # fmt: skip
    return path


def test_calibrated_catalog_reports_the_map_and_keeps_q_and_every_row(tmp_path, cube):
    # every tile q = sigmoid(0.4) = 0.599; the map sends q to 0.2 + q / 2 on [0, 1]
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=0.4, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    plain = infer(ckpt, cube, tmp_path / "plain.parquet")
    path = write_map(tmp_path / "cal.parquet", [0.0, 1.0], [0.2, 0.7])
    cfg = InferConfig(threshold=0.5, calibrate=True)
    infer_catalog(checkpoint=str(ckpt), cube=str(cube), out=str(tmp_path / "cal_cat.parquet"),
                  infer_config=cfg, encoder_config=SMALL, seed=1, device=CPU,
                  calibration=path)  # fmt: skip
    cal = read_catalog(tmp_path / "cal_cat.parquet", kind="predicted", n_images=7)
    q = 1 / (1 + math.exp(-0.4))
    assert len(cal) == len(plain) == 700  # q > 0.5 decides; calibrated prob 0.5 would not
    assert cal["prob_raw"].to_numpy() == pytest.approx(q, rel=1e-5)
    assert cal["prob"].to_numpy() == pytest.approx(0.2 + q / 2, rel=1e-5)
    assert cal["x_sd"].to_numpy() == pytest.approx(0.5 * plain["x_sd"].to_numpy(), rel=1e-6)
    assert cal["log_flux_sd"].to_numpy() == pytest.approx(2 * plain["log_flux_sd"], rel=1e-6)
    assert read_metadata(tmp_path / "cal_cat.parquet")["calibration"]["file"] == str(path)
    for name, depth, seed in (("d25", 25, 1), ("seed0", 5, 0)):
        other = write_map(tmp_path / f"{name}.parquet", [0.0, 1.0], [0.2, 0.7], depth, seed)
        with pytest.raises(
            CalibrationError,
            match=rf"{name}.parquet: calibration of the "
            rf"encoder d = {depth}, seed {seed}, but .* is d = 5, seed 1",
        ):
            infer_catalog(
                checkpoint=str(ckpt),
                cube=str(cube),
                out=str(tmp_path / "x.parquet"),
                infer_config=cfg,
                encoder_config=SMALL,
                seed=1,
                device=CPU,
                calibration=other,
            )
    with pytest.raises(ValueError, match="calibrate needs"):
        infer_catalog(checkpoint=str(ckpt), cube=str(cube), out=str(tmp_path / "x.parquet"),
                      infer_config=cfg, encoder_config=SMALL, seed=1, device=CPU)  # fmt: skip
    assert not list(tmp_path.glob("*x.parquet*"))


def test_depth_mismatch(tmp_path, cube):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=0.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0, depth=25)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"trained on depth d = 25, but .* has D = 5"):
        infer(ckpt, cube, tmp_path / "cat.parquet")


def test_config_mismatch(tmp_path, cube):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=0.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    other = EncoderConfig(stem_channels=8, width=32, n_blocks=1)
    with pytest.raises(CheckpointError, match="width"):
        infer(ckpt, cube, tmp_path / "cat.parquet", enc=other)


def test_wrong_image_shape(tmp_path):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=0.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=0.0, log_flux=8.0)  # fmt: skip
    small = tmp_path / "d5.fits"
    write_cube(small, [np.full((2, 64, 64), 865.0, np.float32)], n_images=2,
               image_shape=(64, 64), cards={"D": 5, "BKG": 865.0})  # fmt: skip
    with pytest.raises(
        ImageCubeError, match=r"d5.fits: images are \(64, 64\), expected \(88, 88\)"
    ):
        infer(ckpt, small, tmp_path / "cat.parquet")


@pytest.fixture(scope="module")
def psf_file(tmp_path_factory):
    params = PSFParams.from_config(yaml.safe_load((REPO / "config.yaml").read_text())["psf"])
    path = tmp_path_factory.mktemp("psf") / "psf.fits"
    write_psf_fits(PSF(params), path, stamp_size=89, pixel_scale=0.396)
    return path


def infer_residual(ckpt, cube, out, psf, batch_size):
    cfg = InferConfig(batch_size=batch_size, threshold=0.5, residual_passes=1)
    return infer_catalog(checkpoint=str(ckpt), cube=str(cube), out=str(out), infer_config=cfg,
                         encoder_config=SMALL, seed=11, device=CPU, psf=psf)  # fmt: skip


@pytest.fixture(scope="module")
def dithered_cube(tmp_path_factory, cube):
    """The test cube with the DITHERS extension a coadd from the simulator has: (7, 5, 2) px."""
    path = tmp_path_factory.mktemp("dithered") / "d5.fits"
    images = read_cube(cube).data
    with CubeWriter(path, n_images=len(images), image_shape=images.shape[1:],
                    cards={"D": 5, "BKG": 865.0}) as writer:  # fmt: skip
        writer.write(images)
        writer.add_image("DITHERS", np.random.default_rng(2).uniform(-0.5, 0.5, (7, 5, 2)))
    return path


def test_residual_passes_give_each_batch_its_own_dithers(
    tmp_path, dithered_cube, psf_file, monkeypatch
):
    """Batch k of the cube is rendered with rows k of DITHERS, numbered from its first image."""
    seen = []

    def record(predict, images, first_id, catalog, model, **settings):
        seen.append((first_id, len(images), model.dithers.copy()))
        return catalog.assign(detection_pass=1)

    monkeypatch.setattr(infer_module, "add_residual_passes", record)
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    cat = infer_residual(ckpt, dithered_cube, tmp_path / "a.parquet", psf_file, 3)
    dithers = read_extension(dithered_cube, "DITHERS")
    assert [(first, n) for first, n, _ in seen] == [(0, 3), (3, 3), (6, 1)]
    for first, n, batch_dithers in seen:
        assert np.array_equal(batch_dithers, dithers[first : first + n])
    assert set(cat.detection_pass) == {1}
    assert read_metadata(tmp_path / "a.parquet")["infer"]["residual_passes"] == 1
    # the file has the column too, as an integer, for readers of the Parquet catalog
    stored = read_catalog(tmp_path / "a.parquet", kind="predicted", n_images=7)
    assert stored.detection_pass.dtype == np.int64 and set(stored.detection_pass) == {1}


def test_residual_passes_on_a_coadd_without_dithers_name_the_file(tmp_path, cube, psf_file):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    with pytest.raises(ImageCubeError, match=f"{cube}.*DITHERS"):
        infer_residual(ckpt, cube, tmp_path / "cat.parquet", psf_file, 100)
    assert not (tmp_path / "cat.parquet").exists()


def test_residual_passes_need_the_psf(tmp_path, cube):
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    with pytest.raises(ValueError, match="PSF"):
        infer_residual(ckpt, cube, tmp_path / "cat.parquet", None, 100)
    assert not (tmp_path / "cat.parquet").exists()


@pytest.mark.parametrize(
    ("threshold", "residual_threshold", "subtract", "expected"),
    [
        (0.5, None, None, [0.5, 0.5]),  # the paper's: one threshold
        (0.5, 0.2, None, [0.5, 0.2]),  # a catalog: the residual pass detects down to 0.2
        (0.05, 0.2, 0.5, [0.05, 0.05]),  # candidates: already cut below it
    ],
)
def test_residual_passes_detect_at_their_own_threshold(
    tmp_path,
    dithered_cube,
    psf_file,
    monkeypatch,
    threshold,
    residual_threshold,
    subtract,
    expected,
):
    """Pass 1 detects at `threshold`; residual passes at the lower of it and
    `residual_threshold` (the screen then judges what they find)."""
    thresholds = []
    real_predict = infer_module.predict_batch

    def spy(enc, images, first_id, threshold, *args):
        thresholds.append(threshold)
        return real_predict(enc, images, first_id, threshold, *args)

    monkeypatch.setattr(infer_module, "predict_batch", spy)
    # the screen's PSF fits are not what this tests: it keeps nothing
    monkeypatch.setattr(residual_module, "screen", lambda *a, **k: np.zeros(len(a[3]), bool))
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    cfg = InferConfig(batch_size=7, threshold=threshold, residual_passes=1,
                      residual_threshold=residual_threshold)  # fmt: skip
    infer_catalog(checkpoint=str(ckpt), cube=str(dithered_cube), out=str(tmp_path / "a.parquet"),
                  infer_config=cfg, encoder_config=SMALL, seed=11, device=CPU, psf=psf_file,
                  subtract_threshold=subtract)  # fmt: skip
    assert thresholds == expected


def test_flux_fit_replaces_the_encoders_fluxes_and_needs_the_prior(
    tmp_path, dithered_cube, psf_file
):
    """With infer.flux_fit every row's flux comes from the image, not the encoder's constant."""
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    cfg = InferConfig(batch_size=100, threshold=0.5, flux_fit=True)
    args = dict(checkpoint=str(ckpt), cube=str(dithered_cube), infer_config=cfg,
                encoder_config=SMALL, seed=11, device=CPU, psf=psf_file)  # fmt: skip
    with pytest.raises(ValueError, match="flux prior"):
        infer_catalog(out=str(tmp_path / "none.parquet"), **args)
    assert not (tmp_path / "none.parquet").exists()
    prior = FluxPrior(flux_min=622.0, flux_max=1e6, alpha=0.47)
    plain = infer_catalog(out=str(tmp_path / "a.parquet"), **{**args, "infer_config": InferConfig(
        batch_size=100, threshold=0.5)})  # fmt: skip
    fitted = infer_catalog(out=str(tmp_path / "b.parquet"), prior=prior, **args)
    assert np.allclose(plain.flux, 5000.0) and len(fitted) == len(plain)
    assert not np.allclose(fitted.flux, 5000.0) and (fitted.flux >= 622.0).all()
    assert np.array_equal(fitted[["x", "y"]], plain[["x", "y"]])  # positions are the encoder's
    # the cube is a d = 5 coadd: with flux_fit_min_depth above it, the fluxes stay the encoder's
    shallow = dataclasses.replace(cfg, flux_fit_min_depth=6)
    kept = infer_catalog(out=str(tmp_path / "c.parquet"), prior=prior,
                         **{**args, "infer_config": shallow})  # fmt: skip
    assert np.allclose(kept.flux, 5000.0)
    at_five = dataclasses.replace(cfg, flux_fit_min_depth=5)
    again = infer_catalog(out=str(tmp_path / "d.parquet"), prior=prior,
                          **{**args, "infer_config": at_five})  # fmt: skip
    assert np.allclose(again.flux, fitted.flux)


def test_fit_positions_moves_the_catalog_rows_and_spares_the_candidates_below_it(
    tmp_path, dithered_cube, psf_file
):
    """infer.fit_positions refits the rows a catalog keeps; in a candidate catalog (rows below
    the catalog threshold) those rows keep the encoder's positions and sds."""
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    args = dict(checkpoint=str(ckpt), cube=str(dithered_cube), encoder_config=SMALL, seed=11,
                device=CPU, psf=psf_file)  # fmt: skip
    plain = infer_catalog(out=str(tmp_path / "a.parquet"), **args,
                          infer_config=InferConfig(batch_size=100, threshold=0.5))  # fmt: skip
    # a star in every tile: many rows move onto the cube's few stars; no merging here
    cfg = InferConfig(batch_size=100, threshold=0.5, fit_positions=True, fit_merge_radius=0.0)
    moved = infer_catalog(out=str(tmp_path / "b.parquet"), infer_config=cfg, **args)
    assert len(moved) == len(plain) and np.allclose(moved.flux, 5000.0)  # fluxes: the encoder's
    assert not np.allclose(moved[["x", "y"]], plain[["x", "y"]])
    assert not np.allclose(moved.x_sd, plain.x_sd)
    # every row (q = 0.95) is below a subtract threshold of 0.99: a candidate, left alone
    spared = infer_catalog(out=str(tmp_path / "c.parquet"), infer_config=cfg,
                           subtract_threshold=0.99, **args)  # fmt: skip
    assert np.array_equal(spared[["x", "y", "x_sd", "y_sd"]], plain[["x", "y", "x_sd", "y_sd"]])


def test_rows_the_position_fit_merges_leave_the_catalog(
    tmp_path, dithered_cube, psf_file, monkeypatch
):
    """A star in every tile: the fit moves many rows onto the cube's few stars, and no two rows
    of an image end closer than infer.fit_merge_radius; a row converged_duplicates drops is not
    in the catalog."""
    ckpt = constant_checkpoint(tmp_path / "c.pt", n_logit=3.0, loc_mu=(0.0, 0.0),
                               loc_raw_sd=-6.0, log_flux=math.log(5000.0))  # fmt: skip
    args = dict(checkpoint=str(ckpt), cube=str(dithered_cube), encoder_config=SMALL, seed=11,
                device=CPU, psf=psf_file)  # fmt: skip
    cfg = InferConfig(batch_size=100, threshold=0.5, fit_positions=True)
    merged = infer_catalog(out=str(tmp_path / "a.parquet"), infer_config=cfg, **args)
    for _, rows in merged.groupby("image_id"):
        xy = rows[["x", "y"]].to_numpy()
        gap = np.abs(xy[:, None, :] - xy[None, :, :]).max(axis=2) + np.eye(len(xy)) * 99
        assert gap.min() >= cfg.fit_merge_radius
    keep_all = dataclasses.replace(cfg, fit_merge_radius=0.0)
    full = infer_catalog(out=str(tmp_path / "b.parquet"), infer_config=keep_all, **args)
    assert len(merged) < len(full)

    def drop_first_row(catalog, rows, radius):
        drop = np.zeros(len(catalog), bool)
        drop[0] = True
        return drop

    def drop_first_row_once(catalog, rows, radius):
        calls.append(len(catalog))
        return drop_first_row(catalog, rows, radius) if len(calls) == 1 else ~np.ones_like(rows)

    calls = []
    monkeypatch.setattr(infer_module, "converged_duplicates", drop_first_row_once)
    one_less = infer_catalog(out=str(tmp_path / "c.parquet"), infer_config=keep_all, **args)
    assert len(one_less) == len(full) - 1  # the 7 images make one batch
    assert calls == [len(full), len(full) - 1]  # checked again after the refit


def test_inference_runs_in_fp32_on_every_device_in_its_layout():
    """bf16 autocast, training's plan on a GPU, misses stars at inference: every device infers
    in fp32 and keeps its own layout and data residency."""
    from coaddbliss.device import CPU_PLAN, DevicePlan

    assert inference_plan(torch.device("cpu")) == CPU_PLAN
    assert inference_plan(torch.device("cuda")) == DevicePlan(True, None, channels_last=True)


def test_an_unknown_fit_weighting_is_refused_before_any_work():
    from coaddbliss.errors import InputError

    with pytest.raises(InputError, match="infer.fit_weights must be one of"):
        InferConfig(fit_weights="sky")
    assert InferConfig(fit_weights="poisson").fit_weights == "poisson"
