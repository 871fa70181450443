"""Config validation: bad values stop the workflow at parse time with the key named."""

import copy

import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake, write_config

from coaddbliss.config import ConfigError, validate_config

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_configs_are_valid(config):
    validate_config(config, SCHEMA)
    validate_config(yaml.safe_load((REPO / "config/demo.yaml").read_text()), SCHEMA)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("data", "test_scenes", -5, r"data\.test_scenes"),
        ("data", "test_scenes", "many", r"data\.test_scenes"),
        ("prior", "alpha", 0, r"prior\.alpha"),
        ("simulate", "noise", "gaussian-ish", r"simulate\.noise"),
        ("simulate", "depths", [1, 0], r"simulate\.depths"),
        ("psf", "beta", 1.5, r"psf\.beta"),
        ("image", "source_hi", 100, r"image\.source_hi"),
        ("image", "source_lo", 70, r"image\.source_lo"),
        ("prior", "flux_min", 2e6, r"prior\.flux_min"),
        ("psf", "stamp_size", 88, r"psf\.stamp_size"),
        ("survey", "bakground", 865, r"survey.*bakground"),
    ],
)
def test_bad_values_name_the_key(config, section, key, value, message):
    bad = copy.deepcopy(config)
    bad[section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(bad, SCHEMA)


def test_unknown_top_level_section(config):
    with pytest.raises(ConfigError, match="tarin"):
        validate_config({**config, "tarin": {}}, SCHEMA)


def test_snakemake_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    write_config(workdir, "bad", data={"test_scenes": -1})
    result = run_snakemake(workdir, "-n", "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert "data.test_scenes" in result.stdout + result.stderr
    assert not (workdir / "results").exists()
