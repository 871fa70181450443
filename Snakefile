# coaddbliss: simulate star fields as single exposures and coadds, train amortized encoders
# per depth d and seed, catalog the held-out test set, score it, and draw the paper's figures;
# then account for every missed star and sweep each method's detection threshold
# (docs/diagnostics.md).
#
# results/{name}/                               one root per config: `name` of the merged config
#                                                (config.yaml: paper; config/demo.yaml: demo; ...)
#   psf.fits                                     pixelized PSF (rule psf)
#   data/test/truth.parquet                      test truth catalog, shared by every d and seed
#   data/test/d{d}.fits                          test image cube of depth d (rule simulate_images)
#   data/{train,val}/seed{seed}/truth.parquet    training / validation truth of one seed
#   data/{train,val}/seed{seed}/d{d}.fits        training / validation images of one seed, depth
#   models/d{d}/seed{seed}/encoder.pt            trained encoder (rule train_encoder)
#   models/d{d}/seed{seed}/history.tsv           per-epoch losses, seconds, device
#   models/d{d}/seed{seed}/calibration.parquet  prob map and sd scales (infer.calibrate)
#   catalogs/d{d}/validation/seed{seed}.parquet  encoder candidates of its validation split
#   catalogs/d{d}/seed{seed}.parquet             encoder catalog of the test split (infer_catalog)
#   baselines/sep/d{d}.parquet                   classical (SEP) catalog of the test split
#   metrics/limits.parquet                       ideal recall, Cramer-Rao flux error (limits)
#   metrics/runs/{method}/d{d}/seed{seed}.parquet  one scored catalog + bootstrap (score_catalog)
#   metrics/metrics.parquet                      every statistic, per seed and pooled
#   figures/{scene,metrics,calibration}.{png,pdf}  figure 1, figure 2, calibration (figure_*)
#   catalogs/d{d}/candidates/seed{seed}.parquet  encoder candidates, q(n = 1) > the candidate cut
#   baselines/sep/candidates/d{d}.parquet        SEP candidates, a lower detection threshold
#   metrics/loss_accounting.parquet              one cause per missed star and spurious detection
#   metrics/{curves,reliability}/d{d}.parquet    operating curves, prob reliability of one depth
#   metrics/{curves,reliability,matched_precision}.parquet  every depth; recall at fixed precision
#   metrics/bayes_flux.parquet                   exact posterior-median flux residuals (Bayes)
#   metrics/crowded_flux.parquet                 test stars' fluxes fitted at true positions
#   figures/{loss_accounting,curves,reliability,bayes_flux}.{png,pdf}  their figures
#   ablation/                                    noise-model ablation (ablation.enabled):
#     white/data/, white/models/, catalogs/, metrics/runs/, ablation.parquet
#   figures/ablation.{png,pdf}                   its figure
#   logs/{rule}/...                              one log per job
#   benchmarks/{rule}/...                        time and memory per heavy job
#   report.html                                  `make report`: snakemake --report

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
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/curves.smk"


# Jobs of seconds run where snakemake runs, not through a cluster's queue (profiles/slurm): a
# figure waits no minutes in a queue and parses no workflow again for a second of work.
localrules:
    all,
    psf,
    physical_limits,
    aggregate_metrics,
    aggregate_curves,
    ablation_table,
    figure_scene,
    figure_metrics,
    figure_calibration,
    figure_loss_accounting,
    figure_curves,
    figure_reliability,
    figure_bayes_flux,
    figure_ablation,


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
        diagnostics_targets(),
        curves_targets(),
