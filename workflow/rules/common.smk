# Shared by every stage: config validation, wildcard constraints, path helpers.
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))  # the library, importable even before `pip install -e .`
# Jobs (local, conda envs, SLURM) import the library from this checkout: the code that
# package_sources() tracks, not whatever copy an environment may have installed.
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")]))
)

from coaddbliss.config import validate_config  # noqa: E402

# Stop before any job runs when config.yaml is wrong, naming the key.
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

DEPTHS = [int(d) for d in config["simulate"]["depths"]]
TRAIN_SEEDS = [int(s) for s in config["data"]["train_seeds"]]
#: Data sets: the shared test split and the per-seed training and validation splits.
DATASETS = ["test"] + [
    f"{split}/seed{s}" for split in ("train", "val") for s in TRAIN_SEEDS
]


wildcard_constraints:
    d=r"\d+",
    seed=r"\d+",
    dataset=r"test|(train|val)/seed\d+",


def dataset_split(dataset):
    """'test', 'train' or 'val' from a data set name such as 'train/seed3'."""
    return dataset.split("/")[0]


def dataset_seed(dataset):
    """The seed of a data set: the config's test seed, or the training seed in its name."""
    if dataset == "test":
        return int(config["data"]["test_seed"])
    return int(dataset.rsplit("seed", 1)[1])


def dataset_size(dataset):
    """Number of scenes of a data set."""
    return int(config["data"][f"{dataset_split(dataset)}_scenes"])


def package_sources(*modules):
    """Library modules a rule's output depends on: editing one reruns exactly those rules."""
    # relative to the working directory: a moved or copied checkout keeps the same inputs
    return [os.path.relpath(SRC / "coaddbliss" / f"{m}.py") for m in modules]


def log_path(rule_name, *parts):
    """One log per job: results/logs/{rule}/{parts}.log."""
    return os.path.join("results", "logs", rule_name, *parts) + ".log"


def benchmark_path(rule_name, *parts):
    """One benchmark table per heavy job: results/benchmarks/{rule}/{parts}.tsv."""
    return os.path.join("results", "benchmarks", rule_name, *parts) + ".tsv"


# -- what `rule all` asks for, stage by stage (path templates live in each stage's .smk) ------


def simulate_targets():
    """Every data set of the config: the test split and each seed's train/val splits, per d."""
    return [PSF_FITS] + expand(IMAGE_CUBE, dataset=DATASETS, d=DEPTHS)


def train_targets():
    """Every (d, seed) encoder of the config (ENCODER_CKPT: train.smk)."""
    return expand(ENCODER_CKPT, d=DEPTHS, seed=TRAIN_SEEDS)


def infer_targets():
    """Every (d, seed) catalog of the test split (ENCODER_CATALOG: infer.smk)."""
    return expand(ENCODER_CATALOG, d=DEPTHS, seed=TRAIN_SEEDS)


def evaluate_targets():
    """The aggregate metrics table, once some rule writes catalogs to score."""
    return [METRICS_TABLE] if scored_methods() else []


def figures_targets():
    """Figure 1 once the test images have a rule; figure 2 and calibration once metrics do."""
    targets = []
    if workflow.is_rule("simulate_images"):
        targets += rules.figure_scene.output
    if scored_methods():
        targets += rules.figure_metrics.output + rules.figure_calibration.output
    return targets


# -- evaluate, figures (issue 4): input functions (path templates live in evaluate.smk) --------


def scored_methods():
    """Methods whose catalogs some rule of this workflow writes (encoder, sep)."""
    return [m for m, rule in CATALOG_RULES.items() if workflow.is_rule(rule)]


def method_runs(method):
    """(d, seed) of every run of a method: sep is one pseudo-seed per depth."""
    seeds = TRAIN_SEEDS if method == "encoder" else [SEP_PSEUDO_SEED]
    return [(d, s) for d in DEPTHS for s in seeds]


def predicted_catalog(wildcards):
    """The catalog a run (method, d, seed) scores."""
    if wildcards.method == "sep" and int(wildcards.seed) != SEP_PSEUDO_SEED:
        raise ValueError(
            f"sep has one pseudo-seed ({SEP_PSEUDO_SEED}), not {wildcards.seed}"
        )
    return CATALOG_PATHS[wildcards.method].format(d=wildcards.d, seed=wildcards.seed)


def metrics_runs(wildcards=None):
    """Every run table the aggregate collects."""
    return [
        METRICS_RUN.format(method=m, d=d, seed=s)
        for m in scored_methods()
        for d, s in method_runs(m)
    ]


def limits_table(wildcards=None):
    """The physical-limits table (issue 6) when rule physical_limits exists, else nothing."""
    return (
        [rules.physical_limits.output.table]
        if workflow.is_rule("physical_limits")
        else []
    )


def baseline_targets():
    """Physical limits and the SEP baseline's catalog of the test split at every depth."""
    return [LIMITS_TABLE] + expand(SEP_CATALOG, d=DEPTHS)


# -- noise-model ablation (issue 6): targets and input functions (templates: ablation.smk) ------

ABLATION = config["ablation"]
ABLATION_ENABLED = bool(ABLATION["enabled"])
ABLATION_DEPTHS = [int(d) for d in ABLATION["depths"]]
ABLATION_SEEDS = [int(s) for s in ABLATION["seeds"]]
#: Noise models: "physical" = the main workflow's data and encoders (config simulate.noise_stage),
#: "white" = noise drawn after alignment (the original code's shortcut), results/ablation/white.
NOISE_MODELS = ("physical", "white")
#: (train noise, test noise) of every cell of the ablation, in table order.
ABLATION_COMBOS = [(tr, te) for tr in NOISE_MODELS for te in NOISE_MODELS]

if ABLATION_ENABLED:
    # The physical half is the main workflow's own data, encoders and scores: it must exist.
    if config["simulate"]["noise_stage"] != "before_alignment":
        raise ValueError(
            "config: ablation.enabled needs simulate.noise_stage: before_alignment "
            "(the physical side of the comparison)"
        )
    for key, values, main_key, main_values in (
        ("depths", ABLATION_DEPTHS, "simulate.depths", DEPTHS),
        ("seeds", ABLATION_SEEDS, "data.train_seeds", TRAIN_SEEDS),
    ):
        if missing := sorted(set(values) - set(main_values)):
            raise ValueError(
                f"config: ablation.{key} {missing} not in {main_key} {main_values}"
            )
#: White-noise data sets of the ablation: the test split and each ablation seed's train/val.
ABLATION_DATASETS = ["test"] + [
    f"{sp}/seed{s}" for sp in ("train", "val") for s in ABLATION_SEEDS
]


def ablation_targets():
    """The ablation table and figure when `ablation.enabled`, else nothing."""
    if not ABLATION_ENABLED:
        return []
    return [ABLATION_TABLE] + rules.figure_ablation.output


def ablation_encoder(wildcards):
    """Checkpoint of the encoder trained on `wildcards.train` noise (physical: the main one)."""
    template = ENCODER_CKPT if wildcards.train == "physical" else ABLATION_CKPT
    return template.format(d=wildcards.d, seed=wildcards.seed)


def ablation_test_cube(wildcards):
    """Test cube of depth d with `wildcards.test` noise (physical: the main one)."""
    template = IMAGE_CUBE if wildcards.test == "physical" else ABLATION_CUBE
    return template.format(dataset="test", d=wildcards.d)


def ablation_runs(wildcards=None):
    """Run tables of every (train, test, d, seed) cell, in ABLATION_COMBOS order per (d, seed);
    physical on physical is the main workflow's run (results/metrics/runs/encoder/...).
    """
    return [
        (
            METRICS_RUN.format(method="encoder", d=d, seed=s)
            if (tr, te) == ("physical", "physical")
            else ABLATION_RUN.format(train=tr, test=te, d=d, seed=s)
        )
        for d in ABLATION_DEPTHS
        for s in ABLATION_SEEDS
        for tr, te in ABLATION_COMBOS
    ]


def ablation_run_cells(wildcards=None):
    """(train, test) of each table of ablation_runs(), in the same order."""
    return [
        list(c)
        for _ in ABLATION_DEPTHS
        for _ in ABLATION_SEEDS
        for c in ABLATION_COMBOS
    ]
