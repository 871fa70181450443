"""Config validation: bad values stop the workflow at parse time with the key named; overlays
hold only what they change."""

import copy

import pytest
import yaml
from conftest import REPO, copy_workflow, merged_config, run_snakemake, write_config

from coaddbliss.config import ConfigError, validate_config

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
OVERLAYS = sorted((REPO / "config").glob("*.yaml"))


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize(
    "overlay", [None, *OVERLAYS], ids=["config.yaml", *(p.stem for p in OVERLAYS)]
)
def test_shipped_configs_are_valid(overlay):
    validate_config(merged_config(REPO, overlay and overlay.relative_to(REPO)), SCHEMA)


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """'section.key' -> value of every leaf of a nested mapping."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.stem for p in OVERLAYS])
def test_overlays_change_existing_keys_only(config, overlay):
    """Every overlay key exists in config.yaml (no typo that Snakemake would merge silently)
    and changes its value (no silent copies)."""
    base, changes = leaves(config), leaves(yaml.safe_load(overlay.read_text()))
    assert set(changes) <= set(base), f"not in config.yaml: {sorted(set(changes) - set(base))}"
    copies = sorted(k for k, v in changes.items() if v == base[k])
    assert not copies, f"{overlay.name} repeats config.yaml's values of {copies}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.stem for p in OVERLAYS])
def test_overlay_name_is_its_file_name(overlay):
    """`make report RUN=demo` finds config/demo.yaml from the results root results/demo/."""
    assert yaml.safe_load(overlay.read_text())["name"] == overlay.stem


def test_leaves_on_a_known_case():
    assert leaves({"a": {"b": 1, "c": [2]}, "d": 3}) == {"a.b": 1, "a.c": [2], "d": 3}


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
        # a Poisson mean far above its truncation: the simulator's rejection loop would spin
        ("prior", "mean_sources", 30.0, r"prior\.mean_sources.*prior\.max_sources"),
        ("prior", "mean_sources", 8.5, r"prior\.mean_sources"),
        # the readers assume 88 x 88 images
        ("image", "size", 96, r"image\.size"),
        ("image", "size", 64, r"image\.size"),
        # the encoder's crop (source square + margin) must stay inside the frame
        ("encoder", "margin", 28, r"encoder\.margin"),
        ("encoder", "margin", 6, r"encoder\.margin.*tile_size"),
        ("encoder", "tile_size", 16, r"encoder\.tile_size"),
        ("image", "source_lo", 24.5, r"image\.source_lo"),
        # empty magnitude ranges
        ("evaluate", "mag_min", 23.0, r"evaluate\.mag_min.*evaluate\.mag_max"),
        ("evaluate", "mag_max", 19.0, r"evaluate\.mag_min"),
        ("limits", "mag_min", 24.0, r"limits\.mag_min"),
        # the band: two increasing quantiles in [0, 1]
        ("evaluate", "band", [0.75, 0.25], r"evaluate\.band"),
        ("evaluate", "band", [0.5, 0.5], r"evaluate\.band"),
        ("evaluate", "band", [0.25, 1.5], r"evaluate\.band"),
        ("evaluate", "band", [-0.1, 0.5], r"evaluate\.band"),
        # integers given as floats (JSON schema's "integer" alone accepts 2.0)
        ("train", "epochs", 2.0, r"train\.epochs"),
        ("data", "test_scenes", 200.0, r"data\.test_scenes"),
        ("simulate", "depths", [1, 5.0], r"simulate\.depths"),
        ("prior", "max_sources", 8.0, r"prior\.max_sources"),
        ("encoder", "tile_size", 4.0, r"encoder\.tile_size"),
        ("figures", "dpi", 200.0, r"figures\.dpi"),
        # candidates must be a superset of the detections: a lower threshold
        ("diagnostics", "candidate_threshold", 0.5, r"diagnostics\.candidate_threshold.*infer"),
        ("diagnostics", "sep_candidate_threshold", 6.0, r"sep_candidate_threshold.*baseline"),
        # ... from either side: a detection threshold lowered below the candidates' fails too
        ("infer", "threshold", 0.05, r"diagnostics\.candidate_threshold.*infer\.threshold"),
        ("baseline", "threshold", 3.0, r"sep_candidate_threshold.*baseline\.threshold"),
        ("diagnostics", "mag_edges", [20.0, 22.0, 21.0], r"diagnostics\.mag_edges.*increase"),
        ("infer", "calibration_mag_edges", [22.8, 22.4], r"calibration_mag_edges.*increase"),
        ("curves", "bins", [[22.4, 23.0], [23.0, 22.8]], r"curves\.bins.*empty"),
        ("curves", "prob_thresholds", {"min": 0.9, "max": 0.1, "step": 0.05}, r"prob_thresholds"),
        (
            "curves",
            "prob_thresholds",
            {"min": 0.1, "max": 0.9, "step": 0.1, "tail": [1.0]},
            r"prob_thresholds",
        ),
        ("curves", "snr_thresholds", {"min": 8.0, "max": 3.0, "step": 0.5}, r"snr_thresholds"),
    ],
)
def test_bad_values_name_the_key(config, section, key, value, message):
    bad = copy.deepcopy(config)
    bad[section][key] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(bad, SCHEMA)


@pytest.mark.parametrize("name", ["", "Paper", "../paper", "a/b", "demo run", "-x", 7])
def test_name_is_one_simple_directory(config, name):
    with pytest.raises(ConfigError, match="'name'"):
        validate_config({**config, "name": name}, SCHEMA)


def test_values_next_to_the_bounds_pass(config):
    """The checks above reject what they should, not their neighbours."""
    ok = copy.deepcopy(config)
    ok["prior"]["mean_sources"] = float(ok["prior"]["max_sources"])  # the bound itself
    ok["encoder"]["margin"] = 24  # the crop [0, 88) fills the frame exactly
    ok["evaluate"]["band"] = [0.0, 1.0]
    ok["evaluate"]["mag_max"] = ok["evaluate"]["mag_min"] + 0.2
    ok["train"]["learning_rate"] = 1  # a float key given as an integer is fine
    ok["diagnostics"]["candidate_threshold"] = 0.49  # just below infer.threshold 0.5
    ok["curves"]["snr_thresholds"] = {"min": 5.0, "max": 5.0, "step": 0.25}  # one threshold
    validate_config(ok, SCHEMA)


@pytest.mark.parametrize(
    "ablation, simulate, message",
    [
        ({"enabled": True, "depths": [25], "seeds": [0]}, {}, r"ablation\.depths.*\[25\]"),
        ({"enabled": True, "depths": [5], "seeds": [7]}, {}, r"ablation\.seeds.*\[7\]"),
        (
            {"enabled": True, "depths": [5], "seeds": [0]},
            {"noise_stage": "after_alignment"},
            r"ablation\.enabled.*simulate\.noise_stage",
        ),
    ],
)
def test_ablation_cross_checks(config, ablation, simulate, message):
    bad = copy.deepcopy(config)
    bad["simulate"]["depths"] = [1, 5]
    bad["simulate"].update(simulate)
    bad["ablation"] = ablation
    with pytest.raises(ConfigError, match=message):
        validate_config(bad, SCHEMA)
    bad["ablation"]["enabled"] = False  # off: nothing of it is checked
    if not simulate:
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


def test_snakemake_merges_the_overlay_and_validates_the_merge(tmp_path):
    """An overlay changes one key and keeps the rest of its section; the merge is validated."""
    workdir = copy_workflow(tmp_path / "repo")
    # valid alone, invalid merged: config.yaml's band [0.25, 0.75] with mag_min beyond mag_max
    (workdir / "config/merge.yaml").write_text("name: merge\nevaluate:\n  mag_min: 24.0\n")
    result = run_snakemake(workdir, "-n", "--configfile", "config/merge.yaml")
    assert result.returncode != 0
    assert "evaluate.mag_min" in result.stdout + result.stderr
    # a one-key overlay: the section's other keys come from config.yaml, the root from the name
    (workdir / "config/merge.yaml").write_text("name: merge\nsimulate:\n  depths: [5]\n")
    result = run_snakemake(workdir, "-n", "--configfile", "config/merge.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout
    assert "results/merge/data/test/d5.fits" in plan and "d1.fits" not in plan
    assert "results/paper" not in plan
