# coaddbliss: simulate star fields as single exposures and coadds, train amortized encoders
# per depth d and seed, catalog the held-out test set, score it, and draw the paper's figures.
#
# results/
#   psf.fits                                   pixelized PSF (rule psf)
#   data/test/truth.parquet                    test truth catalog, shared by every d and seed
#   data/test/d{d}.fits                        test image cube of depth d (rule simulate_images)
#   data/{train,val}/seed{seed}/truth.parquet  training / validation truth of one seed
#   data/{train,val}/seed{seed}/d{d}.fits      training / validation images of one seed and depth
#   models/d{d}/seed{seed}/encoder.pt          trained encoder (rule train_encoder)
#   catalogs/d{d}/seed{seed}.parquet           encoder catalog of the test split (rule infer_catalog)
#   baselines/sep/d{d}.parquet                 classical (SEP) catalog of the test split
#   metrics/                                   per-bin metrics and bootstrap bands
#   figures/                                   PNG and PDF figures
#   ablation/                                  noise-model ablation (config ablation.enabled):
#                                              white-noise data, encoders, catalogs, table
#   logs/{rule}/...                            one log per job
#   benchmarks/{rule}/...                      time and memory per heavy job

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/ablation.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        simulate_targets(),
        train_targets(),
        infer_targets(),
        baseline_targets(),
        evaluate_targets(),
        figures_targets(),
        ablation_targets(),
