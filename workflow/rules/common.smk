# Shared by every stage: config validation, wildcard constraints, path helpers.
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))  # the library, importable even before `pip install -e .`

from coaddbliss.config import validate_config  # noqa: E402

# Stop before any job runs when config.yaml is wrong, naming the key.
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

DEPTHS = [int(d) for d in config["simulate"]["depths"]]
TRAIN_SEEDS = [int(s) for s in config["data"]["train_seeds"]]
#: Data sets: the shared test split and the per-seed training and validation splits.
DATASETS = ["test"] + [f"{split}/seed{s}" for split in ("train", "val") for s in TRAIN_SEEDS]


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
    """Final outputs of stage 'evaluate' (not implemented yet)."""
    return []


def figures_targets():
    """Final outputs of stage 'figures' (not implemented yet)."""
    return []


def baseline_targets():
    """Final outputs of stage 'baseline' (not implemented yet)."""
    return []
