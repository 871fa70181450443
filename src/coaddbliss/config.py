"""Configuration validation: the JSON schema plus the checks a schema cannot express.

Errors name the offending key (`data.test_scenes`) so a user fixes config.yaml, not a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Validate `config` against the schema and the geometry; raise `ConfigError` if wrong."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        if error.validator == "additionalProperties":
            raise ConfigError(f"config key {_key_path(error)!r}: {error.message}")
        raise ConfigError(f"config key {_key_path(error)!r}: {error.message}")
    check_geometry(config)


def check_geometry(config: dict[str, Any]) -> None:
    """Cross-key checks: source square inside the frame, flux bounds ordered, tiles that fit."""
    image, prior = config["image"], config["prior"]
    lo, hi, size = image["source_lo"], image["source_hi"], image["size"]
    if not lo < hi:
        raise ConfigError(f"config key 'image.source_lo' ({lo}) must be < 'image.source_hi' ({hi})")
    if hi > size:
        raise ConfigError(
            f"config key 'image.source_hi' ({hi}) lies outside the {size}-pixel frame"
        )
    if not prior["flux_min"] < prior["flux_max"]:
        raise ConfigError(
            f"config key 'prior.flux_min' ({prior['flux_min']}) must be < "
            f"'prior.flux_max' ({prior['flux_max']})"
        )
    if config["psf"]["stamp_size"] % 2 != 1:
        raise ConfigError("config key 'psf.stamp_size' must be odd so the PSF has a centre pixel")
    tile = config.get("encoder", {}).get("tile_size")
    if tile is not None and (hi - lo) % tile != 0:
        raise ConfigError(
            f"config key 'encoder.tile_size' ({tile}) must divide the source square ({hi - lo} px)"
        )


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    config = yaml.safe_load(path.read_text())
    validate_config(config, schema_path)
    return config
