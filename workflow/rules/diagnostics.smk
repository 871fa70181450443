# Stage 'diagnostics': where each method loses stars (docs/evaluation.md). Candidates below the
# detection threshold (encoder: every tile with q(n = 1) > diagnostics.candidate_threshold; SEP:
# detection at diagnostics.sep_candidate_threshold sigma), then one cause per missed star and per
# spurious detection of every run, pooled over seeds, and a bar chart of the missed-star causes.
#
#   catalogs/d{d}/candidates/seed{seed}.parquet   encoder candidates (rule infer_candidates)
#   baselines/sep/candidates/d{d}.parquet         SEP candidates (rule sep_candidates)
#   metrics/loss_accounting.parquet               per run and pooled (rule loss_accounting)
#   figures/loss_accounting.{png,pdf}             missed-star causes per method and d
#
# Every template derives from another stage's, so a moved results tree moves these too.

DIAGNOSTICS = config["diagnostics"]
if not DIAGNOSTICS["candidate_threshold"] < config["infer"]["threshold"]:
    raise ValueError(
        "config: diagnostics.candidate_threshold must be below infer.threshold "
        "(candidates are a superset of the detections)"
    )
if not DIAGNOSTICS["sep_candidate_threshold"] < config["baseline"]["threshold"]:
    raise ValueError(
        "config: diagnostics.sep_candidate_threshold must be below baseline.threshold "
        "(candidates are a superset of the detections)"
    )


# the candidates of a method sit in a `candidates/` folder beside its detections
CANDIDATE_CATALOG = os.path.join(
    os.path.dirname(ENCODER_CATALOG), "candidates", os.path.basename(ENCODER_CATALOG)
)  # infer.smk
SEP_CANDIDATE_CATALOG = os.path.join(
    os.path.dirname(SEP_CATALOG), "candidates", os.path.basename(SEP_CATALOG)
)  # baseline.smk
CANDIDATE_PATHS = {"encoder": CANDIDATE_CATALOG, "sep": SEP_CANDIDATE_CATALOG}
LOSS_TABLE = os.path.join(os.path.dirname(METRICS_TABLE), "loss_accounting.parquet")


use rule infer_catalog as infer_candidates with:
    output:
        catalog=CANDIDATE_CATALOG,
    log:
        log_path("infer_candidates", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("infer_candidates", "d{d}", "seed{seed}")
    params:
        encoder=config["encoder"],
        image=config["image"],
        infer={**config["infer"], "threshold": DIAGNOSTICS["candidate_threshold"]},


use rule baseline_sep as sep_candidates with:
    output:
        catalog=SEP_CANDIDATE_CATALOG,
    log:
        log_path("sep_candidates", "d{d}"),
    benchmark:
        benchmark_path("sep_candidates", "d{d}")
    params:
        # the pruning threshold goes down too, or it would cut the candidates back to prune_snr
        baseline={
            **config["baseline"],
            "threshold": DIAGNOSTICS["sep_candidate_threshold"],
            "prune_snr": min(
                config["baseline"]["prune_snr"], DIAGNOSTICS["sep_candidate_threshold"]
            ),
        },
        background=config["survey"]["background"],


#: (method, d, seed) of every run the accounting covers, in input order (functions: common.smk)
LOSS_RUNS = [(m, d, s) for m in scored_methods() for d, s in method_runs(m)]


rule loss_accounting:
    input:
        truth=TEST_TRUTH,
        cubes=expand(TEST_CUBE, d=DEPTHS),  # N of each depth's test split (header only)
        catalogs=[CATALOG_PATHS[m].format(d=d, seed=s) for m, d, s in LOSS_RUNS],
        candidates=[CANDIDATE_PATHS[m].format(d=d, seed=s) for m, d, s in LOSS_RUNS],
        code=package_sources("loss_accounting", "metrics", "catalog", "images"),
    output:
        table=LOSS_TABLE,
    log:
        log_path("loss_accounting", "loss_accounting"),
    benchmark:
        benchmark_path("loss_accounting", "loss_accounting")
    conda:
        "../../envs/analysis.yaml"
    params:
        depths=DEPTHS,
        runs=LOSS_RUNS,
        accounting={
            "source_lo": config["image"]["source_lo"],
            "tile_size": config["encoder"]["tile_size"],
            "max_offset": config["evaluate"]["max_offset"],
            "mag_edges": DIAGNOSTICS["mag_edges"],
        },
    script:
        "../scripts/loss_accounting.py"


rule figure_loss_accounting:
    input:
        table=rules.loss_accounting.output.table,
        code=package_sources("loss_figure", "plotting"),
    output:
        png=report(
            FIGURE.format(name="loss_accounting", ext="png"),
            caption="../report/loss_accounting.rst",
            category="Figures",
        ),
        pdf=FIGURE.format(name="loss_accounting", ext="pdf"),
    log:
        log_path("figure_loss_accounting", "loss_accounting"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/figure_loss_accounting.py"


#: What `rule all` asks for: the loss table and its figure, once some rule writes catalogs
#: (a lambda: the lint wants named functions in common.smk, away from the rules)
diagnostics_targets = lambda: (
    [LOSS_TABLE] + rules.figure_loss_accounting.output if scored_methods() else []
)
