"""Turn a trained encoder into a predicted catalog of an image cube (docs/method.md §5, §8).

A tile is a detection when q(n = 1) > threshold (0.5); its location is the logit-normal median
sigmoid(mu) (the mode has no closed form), its flux the log-normal median exp(mu). The catalog
keeps the posterior: `prob`, and the sd of x, y (pixels, by quadrature) and of ln(flux).
With `residual_passes` > 0 the encoder also searches the image minus the stars it found
(coaddbliss.residual_passes); `detection_pass` says which pass found each row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from coaddbliss.calibration import CalibrationError, calibrate_catalog, read_calibration
from coaddbliss.catalog import write_catalog
from coaddbliss.checkpoint import CheckpointError, LoadedEncoder, load_encoder
from coaddbliss.device import DevicePlan, plan_for
from coaddbliss.encoder import EncoderConfig, normalize
from coaddbliss.errors import InputError
from coaddbliss.flux_fit import FIT_WEIGHTS, FluxPrior, converged_duplicates, refit_catalog
from coaddbliss.images import cube_batches
from coaddbliss.psf import read_psf_fits
from coaddbliss.residual_passes import ImageModel, add_residual_passes, cube_image_model
from coaddbliss.sections import from_sections
from coaddbliss.symmetry import LOOKS, average_params, transform_images, untransform_params
from coaddbliss.tile_merge import merge_adjacent
from coaddbliss.variational import TileParams, constrain, logit_normal_moments

log = logging.getLogger("coaddbliss.infer")


@dataclass(frozen=True)
class InferConfig:
    """Inference settings; see config.yaml `infer`."""

    batch_size: int = 256  # images per forward pass: bounds memory, not the result
    threshold: float = 0.5  # a tile is a detection when q(n = 1) > threshold
    merge_radius: float = 0.0  # adjacent tiles whose stars lie closer (px, both axes) are one
    # star (coaddbliss.tile_merge); 0 = independent tiles, the paper's family
    residual_passes: int = 0  # searches of the image minus the stars found so far
    # (coaddbliss.residual_passes); 0 = one look at the image, the paper's
    residual_exclusion: float = 2.0  # px (both axes): a residual detection this close to an
    # earlier one is that star again
    residual_prune_snr: float = 4.0  # a residual detection must keep this flux / sd(flux) in a
    # joint PSF fit with the stars found before it
    residual_threshold: float | None = None  # q(n = 1) a residual detection needs before that
    # fit judges it; None = `threshold`. Below `threshold` (candidate catalogs) it is `threshold`
    flux_fit: bool = False  # fluxes from a joint PSF fit of each image's rows at the encoder's
    # positions and the flux prior (coaddbliss.flux_fit); False: the encoder's, the paper's
    flux_fit_min_depth: int = 1  # flux_fit at depths d >= this only (2: coadds only)
    fit_positions: bool = False  # positions (and their sds) from that fit too, Gauss-Newton
    # steps from the encoder's; False: the encoder's, the paper's
    fit_weights: str = "equal"  # pixels of that fit: "equal", or "poisson", each weighted by its
    # photon noise (sky plus the stars' light; flux_fit.FIT_WEIGHTS)
    fit_merge_radius: float = 1.0  # px (both axes): rows the position fit moved this close are
    # one star (the more probable row stays, the fit runs again); 0 = keep both
    symmetries: int = 1  # looks averaged per image: 1, 2, 4 or 8 flips and transposes of it
    # (coaddbliss.symmetry); 1 = one look, the paper's
    calibrate: bool = False  # `prob` and the posterior sds through the encoder's calibration on
    # its validation split (coaddbliss.calibration); False: q(n = 1) and q's sds, the paper's
    calibration_bins: int = 40  # equal-width q bins of the calibration fit
    calibration_mag_edges: tuple[float, ...] = (22.4,)  # estimated-magnitude bands, one map each

    def __post_init__(self):
        # before any forward pass: the fit that reads it runs after them
        if self.fit_weights not in FIT_WEIGHTS:
            raise InputError(
                f"infer.fit_weights must be one of {FIT_WEIGHTS}, got {self.fit_weights!r}"
            )

    @classmethod
    def from_config(cls, infer_config: dict) -> InferConfig:
        """From the config's `infer` section."""
        return from_sections(cls, infer_config)

    def as_dict(self) -> dict:
        return asdict(self)


def check_compatible(
    enc: LoadedEncoder,
    checkpoint: str | os.PathLike,
    cube_path: str | os.PathLike,
    header: dict[str, Any],
    encoder_config: EncoderConfig | None = None,
) -> None:
    """Refuse to catalog images the encoder was not trained for, or under a changed config."""
    depth, bkg = int(header["D"]), float(header["BKG"])
    if depth != enc.depth:
        raise CheckpointError(
            f"{checkpoint}: trained on depth d = {enc.depth}, but {cube_path} has D = {depth}"
        )
    if not np.isclose(bkg, enc.background, rtol=1e-6):
        raise CheckpointError(
            f"{checkpoint}: trained with background {enc.background}, but {cube_path} has "
            f"BKG = {bkg}"
        )
    # keys added to EncoderConfig since the checkpoint was written take their defaults: the
    # network it describes is the one those defaults build (load_encoder built it so)
    stored = enc.model.config.as_dict()
    if encoder_config is not None and encoder_config.as_dict() != stored:
        wanted = encoder_config.as_dict()
        diff = {k: (stored.get(k), wanted.get(k)) for k in wanted if stored.get(k) != wanted[k]}
        raise CheckpointError(
            f"{checkpoint}: encoder config differs from the current config "
            f"(key: (checkpoint, config)) {diff}; retrain the encoder"
        )


def _tile_xy(loc_mu: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """Pixel (x, y) of every tile's star (n, K, K, 2): the logit-normal median sigmoid(mu)."""
    k = loc_mu.shape[-2]
    origin = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="xy"), axis=-1)  # (K, K, 2)
    return cfg.source_lo + (origin + 1.0 / (1.0 + np.exp(-loc_mu))) * cfg.tile_size


def _detections(
    p: TileParams, prob: np.ndarray, xy: np.ndarray, threshold: float, first_id: int,
    cfg: EncoderConfig,
) -> pd.DataFrame:  # fmt: skip
    """Catalog rows of the tiles whose `prob` (n, K, K) passes `threshold`: one star per tile,
    read from `p` (one head of the family), located at `xy` (n, K, K, 2) pixels."""
    img, row, col = np.nonzero(prob > threshold)

    def kept(t: torch.Tensor) -> np.ndarray:  # the detections' entries only, then float64
        return t.cpu().numpy()[img, row, col].astype(np.float64)

    _, u_sd = logit_normal_moments(kept(p.loc_mu), kept(p.loc_sd))  # (D, 2) each
    return pd.DataFrame({
        "image_id": (img + first_id).astype(np.int64),
        "x": xy[img, row, col, 0], "y": xy[img, row, col, 1],
        "flux": np.exp(kept(p.flux_mu)),
        "prob": prob[img, row, col],
        "x_sd": u_sd[:, 0] * cfg.tile_size, "y_sd": u_sd[:, 1] * cfg.tile_size,
        "log_flux_sd": kept(p.flux_sd),
    })  # fmt: skip


def inference_plan(device: torch.device) -> DevicePlan:
    """How the forward passes of inference run on `device`: its training plan (device.plan_for:
    layout, data residency) without autocast. In bf16, as training runs on a GPU or a CPU with
    native bf16, a d = 10 catalog missed 41 more of the 22 105 test stars in 20-23 mag
    (docs/performance.md); fp32 inference costs little next to training."""
    return replace(plan_for(device), amp_dtype=None)


def predict_batch(
    enc: LoadedEncoder,
    images: np.ndarray,
    first_id: int,
    threshold: float,
    device: torch.device,
    plan: DevicePlan | None = None,
    merge_radius: float = 0.0,
    symmetries: int = 1,
) -> pd.DataFrame:
    """Detections of images (n, H, W) counts, numbered from `first_id`, as catalog rows.

    `plan`: autocast of the forward pass; None: fp32 in the device's layout (inference_plan).
    `merge_radius`: adjacent tiles placing one star closer than this (px) merge (tile_merge).
    `symmetries`: the tile posteriors are averaged over this many looks (flips and transposes)
    of each image (coaddbliss.symmetry), one forward pass each.
    A two-star family (encoder.tile_capacity 2) adds a tile's second star when
    q(n = 2) = q(n >= 1) q(n = 2 | n >= 1) passes the threshold; merging moves first stars only.
    """
    plan = plan or inference_plan(device)
    model, cfg = enc.model, enc.model.config
    with torch.inference_mode():
        x = torch.from_numpy(images).to(device)
        x = normalize(model.crop(x), enc.background, enc.depth)  # crop first: less to normalize
        looks = []
        for look in LOOKS[:symmetries]:
            # channels-last, like the loaded model (checkpoint.py); constrain casts to fp32
            raw = plan.forward(model, transform_images(x, look))
            looks.append(untransform_params(constrain(raw, cfg.flux_offset), look))
        p = average_params(looks)
    prob = p.prob.cpu().numpy().astype(np.float64)  # (n, K, K) q(n >= 1)
    xy = _tile_xy(p.loc_mu.cpu().numpy().astype(np.float64), cfg)  # (n, K, K, 2) pixels
    rows = [_detections(p, merge_adjacent(prob, xy, merge_radius), xy, threshold, first_id, cfg)]
    if p.second is not None:
        s = p.second
        prob2 = prob * s.prob.cpu().numpy().astype(np.float64)  # q(n = 2)
        xy2 = _tile_xy(s.loc_mu.cpu().numpy().astype(np.float64), cfg)
        rows.append(_detections(s, prob2, xy2, threshold, first_id, cfg))
    return pd.concat(rows, ignore_index=True).sort_values("image_id", kind="stable",
                                                          ignore_index=True)  # fmt: skip


def catalog_batch(
    enc: LoadedEncoder,
    images: np.ndarray,
    first_id: int,
    cfg: InferConfig,
    device: torch.device,
    plan: DevicePlan | None = None,
    model: ImageModel | None = None,
    subtract_threshold: float | None = None,
    prior: FluxPrior | None = None,
) -> pd.DataFrame:
    """Catalog rows of images (n, H, W) counts numbered from `first_id`: every detection pass.

    `model` (the PSF, sky and these images' dithers) is needed when `cfg.residual_passes` > 0;
    residual passes subtract the rows above `subtract_threshold` (None: `cfg.threshold`) and
    keep new rows above `cfg.residual_threshold` (or `cfg.threshold`, whichever is lower).
    `cfg.flux_fit` (at depths from `cfg.flux_fit_min_depth`) and `cfg.fit_positions` replace the
    rows' fluxes and positions by a joint PSF fit of the image (flux_fit.refit_catalog), which
    needs `model` (and for fluxes the `prior`): the rows the residual passes subtract and the
    residual detections take part; the candidate rows below them keep the encoder's values.
    """
    # on single exposures the detections near the threshold are half noise: fitted, their
    # posterior (of a star) sits at the prior's floor, inside the faintest bin
    fit_flux = cfg.flux_fit and enc.depth >= cfg.flux_fit_min_depth
    refit = fit_flux or cfg.fit_positions
    if (cfg.residual_passes > 0 or refit) and model is None:
        raise ValueError("residual passes and PSF refits need the image model (PSF, sky, dithers)")
    if cfg.flux_fit and prior is None:
        raise ValueError("infer.flux_fit needs the flux prior")
    subtract_threshold = cfg.threshold if subtract_threshold is None else subtract_threshold
    rows = _detect(enc, images, first_id, cfg, device, plan, model, subtract_threshold)
    if not refit:
        return rows
    # the catalog's stars take part in the fit: pass-1 rows the residual passes subtract and
    # the residual detections (which survived a fit of their own)
    stars = (rows["prob"] > subtract_threshold).to_numpy() | (rows["detection_pass"] > 1).to_numpy()
    return _refit(images, first_id, rows, stars, cfg, model, prior if fit_flux else None)


def _refit(
    images: np.ndarray,
    first_id: int,
    rows: pd.DataFrame,
    stars: np.ndarray,
    cfg: InferConfig,
    model: ImageModel,
    flux_prior: FluxPrior | None,
) -> pd.DataFrame:
    """catalog_batch's joint PSF fit of the `stars` rows (bool (N,)), and with positions the
    merging of the rows it moves onto one star."""
    rows = refit_catalog(images, first_id, rows, model, flux_prior, positions=cfg.fit_positions,
                         rows=stars, weights=cfg.fit_weights)  # fmt: skip
    if not cfg.fit_positions:
        return rows
    # until no two fitted rows sit on one star (each round drops rows: it ends). Every fitted
    # row takes the next round's steps, not only those of the images that lost a row: at d = 25
    # that finds 9 more stars and 13 fewer spurious ones in 20-23 mag (docs/encoder.md)
    while (drop := converged_duplicates(rows, stars, cfg.fit_merge_radius)).any():
        rows, stars = rows[~drop].reset_index(drop=True), stars[~drop]
        rows = refit_catalog(images, first_id, rows, model, flux_prior, positions=True,
                             rows=stars, weights=cfg.fit_weights)  # fmt: skip
    return rows


def _detect(
    enc: LoadedEncoder,
    images: np.ndarray,
    first_id: int,
    cfg: InferConfig,
    device: torch.device,
    plan: DevicePlan | None,
    model: ImageModel | None,
    subtract_threshold: float,
) -> pd.DataFrame:
    """catalog_batch's detections: pass 1 and the residual passes."""

    def predict(batch: np.ndarray, threshold: float = cfg.threshold) -> pd.DataFrame:
        return predict_batch(
            enc,
            np.asarray(batch, dtype=np.float32),
            first_id,
            threshold,
            device,
            plan,
            cfg.merge_radius,
            cfg.symmetries,
        )

    rows = predict(images)
    if cfg.residual_passes == 0:
        return rows.assign(detection_pass=1)
    # a residual detection must also survive the screen's joint PSF fit, which can judge weaker
    # ones than the catalog's threshold admits: the faint companions a bright star hid
    residual_threshold = cfg.threshold
    if cfg.residual_threshold is not None:
        residual_threshold = min(cfg.threshold, cfg.residual_threshold)
    return add_residual_passes(
        lambda batch: predict(batch, residual_threshold), images, first_id, rows, model,
        passes=cfg.residual_passes,
        subtract_threshold=subtract_threshold, exclusion=cfg.residual_exclusion,
        prune_snr=cfg.residual_prune_snr,
    )  # fmt: skip


def image_model(
    enc: LoadedEncoder, psf: str | os.PathLike, cube: str | os.PathLike, n_images: int
) -> ImageModel:
    """What residual passes render with for `cube`'s images: the PSF, the sky, each image's
    dithers (its DITHERS extension, d > 1), and the encoder's crop as the window (residuals are
    needed only where the encoder reads the image)."""
    return cube_image_model(read_psf_fits(psf), cube, enc.depth, n_images, enc.background,
                            enc.model.config.crop_window)  # fmt: skip


def infer_catalog(
    *,
    checkpoint: str,
    cube: str,
    out: str,
    infer_config: InferConfig,
    encoder_config: EncoderConfig | None,
    seed: int,
    device: torch.device,
    plan: DevicePlan | None = None,
    psf: str | os.PathLike | None = None,
    subtract_threshold: float | None = None,
    calibration: str | os.PathLike | None = None,
    prior: FluxPrior | None = None,
) -> pd.DataFrame:
    """Catalog every image of `cube` with the encoder in `checkpoint`; write `out` atomically.

    `plan`: autocast of the forward passes; None: fp32 in the device's layout (inference_plan).
    `psf`: the survey PSF (psf.fits), needed by residual passes; `subtract_threshold`: what
    they subtract (None: the catalog's own threshold; the candidate catalogs pass the real one).
    `calibration`: the encoder's calibration file, needed by `infer_config.calibrate`; detections
    are still cut on q(n = 1), which the catalog keeps as `prob_raw`.
    `prior`: the flux prior, needed by `infer_config.flux_fit`.
    """
    if infer_config.calibrate and calibration is None:
        raise ValueError("infer.calibrate needs the encoder's calibration file")
    enc = load_encoder(checkpoint, device)
    header, n_images, batches = cube_batches(cube, infer_config.batch_size)
    check_compatible(enc, checkpoint, cube, header, encoder_config)
    calibrated = None
    if infer_config.calibrate:  # refuse another encoder's calibration before the long loop
        calibrated, provenance = read_calibration(calibration)
        fitted_for = (provenance.get("depth"), provenance.get("seed"))
        if fitted_for != (enc.depth, int(seed)):
            raise CalibrationError(
                f"{calibration}: calibration of the encoder d = {fitted_for[0]}, seed "
                f"{fitted_for[1]}, but {checkpoint} is d = {enc.depth}, seed {seed}"
            )
    if infer_config.flux_fit and prior is None:
        raise ValueError("infer.flux_fit needs the flux prior")
    model = None
    if infer_config.residual_passes > 0 or infer_config.flux_fit or infer_config.fit_positions:
        if psf is None:
            raise ValueError(
                "infer.residual_passes > 0, flux_fit and fit_positions need the PSF file"
            )
        model = image_model(enc, psf, cube, n_images)
    parts, first = [], 0
    for images in batches:
        batch_model = None if model is None else model.rows(first, first + len(images))
        parts.append(
            catalog_batch(
                enc,
                images,
                first,
                infer_config,
                device,
                plan,
                batch_model,
                subtract_threshold,
                prior,
            )
        )
        first += len(images)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    calibration_meta = None
    if calibrated is not None:
        df = calibrate_catalog(df, calibrated) if "prob" in df.columns else df
        calibration_meta = {"file": str(calibration), "fitted_on": provenance.get("catalog"),
                            "sd_scale": calibrated.sd_scale}  # fmt: skip
    write_catalog(
        df,
        out,
        kind="predicted",
        metadata={
            "producer": "encoder",
            "n_images": n_images,
            "depth": enc.depth,
            "seed": int(seed),
            "infer": infer_config.as_dict(),
            "encoder": enc.meta["encoder_config"],
            "train": enc.meta["train_config"],
            "checkpoint_epoch": enc.meta.get("epoch"),
            "checkpoint_version": enc.meta["version"],
            "calibration": calibration_meta,
        },
    )
    log.info("%d detections in %d images (d = %d) -> %s", len(df), n_images, enc.depth, out)
    if len(df) == 0 and n_images > 0:
        log.warning("%s: no detections in any of its %d images (blank scenes?)", cube, n_images)
    return df
