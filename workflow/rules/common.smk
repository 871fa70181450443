# Shared by every stage: config validation, the results root, wildcard constraints, path and
# code-input helpers, and the targets and input functions of `rule all` and the stages.
import functools
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))  # the library, importable even before `pip install -e .`
# Jobs (local, conda envs, SLURM) import the library from this checkout: the code that
# script_sources() tracks, not whatever copy an environment may have installed.
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")]))
)

from coaddbliss.config import validate_config  # noqa: E402
from coaddbliss.sources import imported_files  # noqa: E402

# Stop before any job runs when the config is wrong, naming the key. `config` is config.yaml
# with any --configfile overlay already merged over it (recursively, by Snakemake).
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

#: Every output of this config (data, models, metrics, figures, logs, benchmarks) lives here:
#: one root per config name, so the paper, demo and large runs never overwrite each other.
RESULTS = f"results/{config['name']}"

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


def result_path(template):
    """A path template under this config's results root: results/{name}/TEMPLATE."""
    return f"{RESULTS}/{template}"


def log_path(rule_name, *parts):
    """One log per job: results/{name}/logs/{rule}/{parts}.log."""
    return result_path(os.path.join("logs", rule_name, *parts) + ".log")


def benchmark_path(rule_name, *parts):
    """One benchmark table per heavy job: results/{name}/benchmarks/{rule}/{parts}.tsv."""
    return result_path(os.path.join("benchmarks", rule_name, *parts) + ".tsv")


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


# -- code inputs: the library files a rule's script imports, directly or not ------------------
# Snakemake only notices edits to a rule's `script:` file. Taking the library files the script
# imports as inputs (followed through the package, whatever the modules are called) makes an
# edit to any of them rerun exactly the rules that run that code, and what depends on them.


@functools.cache
def script_sources(script):
    """src/coaddbliss files that workflow/scripts/SCRIPT imports, directly or not (cwd-relative)."""
    path = Path(workflow.basedir) / "workflow" / "scripts" / script
    return sorted(os.path.relpath(f) for f in imported_files(path, SRC / "coaddbliss"))


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


def baseline_targets():
    """Physical limits and the SEP baseline's catalog of the test split at every depth."""
    return [LIMITS_TABLE] + expand(SEP_CATALOG, d=DEPTHS)


def evaluate_targets():
    """The aggregate metrics table (METRICS_TABLE: evaluate.smk)."""
    return [METRICS_TABLE]


def figures_targets():
    """Figure 1 (a test scene), figure 2 (metrics) and the calibration figure."""
    return (
        rules.figure_scene.output
        + rules.figure_metrics.output
        + rules.figure_calibration.output
    )


def figure_output(name):
    """Outputs of figure NAME (FIGURE: figures.smk): png, in the report with the caption
    workflow/report/NAME.rst, and pdf."""
    return {
        "png": report(
            FIGURE.format(name=name, ext="png"),
            caption=f"../report/{name}.rst",
            category="Figures",
        ),
        "pdf": FIGURE.format(name=name, ext="pdf"),
    }


# -- evaluate: input functions (path templates live in evaluate.smk; docs/evaluation.md) ------


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
        for m in CATALOG_PATHS
        for d, s in method_runs(m)
    ]


# -- diagnostics and curves (docs/diagnostics.md): targets (diagnostics.smk, curves.smk) ------


def diagnostics_targets():
    """The loss-accounting table and its figure (LOSS_TABLE: diagnostics.smk)."""
    return [LOSS_TABLE] + rules.figure_loss_accounting.output


def curves_targets():
    """The curves, reliability, matched-precision, Bayes and crowded-field flux tables and their
    figures."""
    return (
        [CURVES_TABLE, RELIABILITY_TABLE, MATCHED_TABLE, BAYES_TABLE, CROWDED_TABLE]
        + rules.figure_curves.output
        + rules.figure_reliability.output
        + rules.figure_bayes_flux.output
    )


# -- noise-model ablation (docs/ablation.md): targets and input functions (ablation.smk) -------
# Cross-key checks of the `ablation` section (depths, seeds, noise stage): coaddbliss.config.

ABLATION = config["ablation"]
ABLATION_ENABLED = bool(ABLATION["enabled"])
ABLATION_DEPTHS = [int(d) for d in ABLATION["depths"]]
ABLATION_SEEDS = [int(s) for s in ABLATION["seeds"]]
#: Noise models: "physical" = the main workflow's data and encoders (config simulate.noise_stage),
#: "white" = noise drawn after alignment (the original code's shortcut), results/{name}/ablation.
NOISE_MODELS = ("physical", "white")
#: (train noise, test noise) of every cell of the ablation, in table order.
ABLATION_COMBOS = [(tr, te) for tr in NOISE_MODELS for te in NOISE_MODELS]


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
    physical on physical is the main workflow's run (METRICS_RUN of method encoder).
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
