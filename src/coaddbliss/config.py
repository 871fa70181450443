"""Configuration validation: the JSON schema plus the checks a schema cannot express.

Errors name the offending key (`data.test_scenes`) so a user fixes config.yaml, not a traceback.
The workflow validates the merged config: config.yaml with any `--configfile` overlay on top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: Image side every reader of the cubes assumes (images.read_cube, infer, the figures), pixels.
IMAGE_SIZE = 88


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def _is_strict_int(checker: Any, instance: Any) -> bool:
    """JSON-schema "integer" without 2.0: YAML's `epochs: 2.0` is a float, and a typo."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12 with one change: "integer" rejects floats that happen to be whole (2.0), which
#: the standard accepts.
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_int),
)


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Validate `config` against the schema and the cross-key checks; raise `ConfigError`."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"config key {_key_path(error)!r}: {error.message}")
    check_geometry(config)
    check_prior(config)
    check_ranges(config)
    check_ablation(config)
    check_infer(config)
    check_diagnostics(config)
    check_curves(config)


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key {key!r} {message}")


def _require_increasing(key: str, edges: list[float]) -> None:
    if any(not lo < hi for lo, hi in zip(edges[:-1], edges[1:], strict=False)):
        _fail(key, f"({edges}) must increase")


def check_geometry(config: dict[str, Any]) -> None:
    """Frame, source square, encoder crop and tiles that the code can handle; odd PSF stamp."""
    image, encoder = config["image"], config["encoder"]
    lo, hi, size = image["source_lo"], image["source_hi"], image["size"]
    if size != IMAGE_SIZE:
        _fail("image.size", f"({size}) must be {IMAGE_SIZE}: the cube readers assume 88 x 88")
    if not lo < hi:
        _fail("image.source_lo", f"({lo}) must be < 'image.source_hi' ({hi})")
    if hi > size:
        _fail("image.source_hi", f"({hi}) lies outside the {size}-pixel frame")
    if config["psf"]["stamp_size"] % 2 != 1:
        _fail("psf.stamp_size", "must be odd so the PSF has a centre pixel")
    tile, margin = encoder["tile_size"], encoder["margin"]
    if (hi - lo) % tile != 0:
        _fail("encoder.tile_size", f"({tile}) must divide the source square ({hi - lo} px)")
    if margin % tile != 0:
        _fail("encoder.margin", f"({margin}) must be a multiple of 'encoder.tile_size' ({tile})")
    if lo - margin < 0 or hi + margin > size:
        _fail(
            "encoder.margin",
            f"({margin}): the encoder's crop [{lo - margin}, {hi + margin}) of "
            f"'image.source_lo'/'image.source_hi' leaves the {size}-pixel frame",
        )


def check_prior(config: dict[str, Any]) -> None:
    """Flux bounds ordered; a Poisson mean the truncation can honour."""
    prior = config["prior"]
    if not prior["flux_min"] < prior["flux_max"]:
        _fail(
            "prior.flux_min",
            f"({prior['flux_min']}) must be < 'prior.flux_max' ({prior['flux_max']})",
        )
    # Counts above max_sources are redrawn (prior.Prior.sample). With an integer max_sources
    # >= the mean, P(n <= max_sources) >= 1/2 (a Poisson's median is at most mean + 1/3), so each
    # scene needs fewer than 2 draws on average and the truncation keeps at least half the
    # Poisson's mass. A mean far above the cap makes the loop spin (P(n <= 8) = 2e-6 for mean 30:
    # ~500 000 draws per scene) and the prior a spike at max_sources the mean no longer describes.
    if prior["mean_sources"] > prior["max_sources"]:
        _fail(
            "prior.mean_sources",
            f"({prior['mean_sources']}) must be <= 'prior.max_sources' ({prior['max_sources']})",
        )


def check_ranges(config: dict[str, Any]) -> None:
    """Magnitude ranges that are not empty; a bootstrap band that is an interval."""
    for section in ("evaluate", "limits"):
        lo, hi = config[section]["mag_min"], config[section]["mag_max"]
        if not lo < hi:
            _fail(f"{section}.mag_min", f"({lo}) must be < '{section}.mag_max' ({hi})")
    lower, upper = config["evaluate"]["band"]
    if not 0 <= lower < upper <= 1:
        _fail("evaluate.band", f"({[lower, upper]}) must be two increasing quantiles in [0, 1]")


def check_ablation(config: dict[str, Any]) -> None:
    """The ablation's physical half is the main workflow's own data and encoders: it must exist."""
    ablation = config["ablation"]
    if not ablation["enabled"]:
        return
    if config["simulate"]["noise_stage"] != "before_alignment":
        _fail(
            "ablation.enabled",
            "needs 'simulate.noise_stage': before_alignment (the physical side of the comparison)",
        )
    for key, main_key in (("depths", "simulate.depths"), ("seeds", "data.train_seeds")):
        section, name = main_key.split(".")
        main_values = config[section][name]
        if missing := sorted(set(ablation[key]) - set(main_values)):
            _fail(f"ablation.{key}", f"{missing} not in '{main_key}' {main_values}")


def check_diagnostics(config: dict[str, Any]) -> None:
    """Candidates below the detection thresholds (a superset of the detections); bins ordered."""
    diagnostics = config["diagnostics"]
    for key, main_key in (
        ("candidate_threshold", "infer.threshold"),
        ("sep_candidate_threshold", "baseline.threshold"),
    ):
        section, name = main_key.split(".")
        value, detection = diagnostics[key], config[section][name]
        if not value < detection:
            _fail(
                f"diagnostics.{key}",
                f"({value}) must be < '{main_key}' ({detection}): candidates are a superset of "
                "the detections",
            )
    _require_increasing("diagnostics.mag_edges", diagnostics["mag_edges"])


def check_infer(config: dict[str, Any]) -> None:
    """Calibration bands of estimated magnitude in order (docs/method.md §5)."""
    _require_increasing("infer.calibration_mag_edges", config["infer"]["calibration_mag_edges"])


def check_curves(config: dict[str, Any]) -> None:
    """Magnitude ranges that are not empty; threshold grids whose min is not above their max."""
    curves = config["curves"]
    for lo, hi in curves["bins"]:
        if not lo < hi:
            _fail("curves.bins", f"range [{lo}, {hi}) is empty")
    for key in ("prob_thresholds", "snr_thresholds"):
        grid = curves[key]
        if not grid["min"] <= grid["max"]:
            _fail(f"curves.{key}", f"min ({grid['min']}) must be <= max ({grid['max']})")


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    config = yaml.safe_load(path.read_text())
    validate_config(config, schema_path)
    return config
