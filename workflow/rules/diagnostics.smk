# Stage 'diagnostics' (docs/diagnostics.md): where each method loses stars. Candidates below the
# detection threshold (encoder: every tile with q(n = 1) > diagnostics.candidate_threshold; SEP:
# detection at diagnostics.sep_candidate_threshold sigma), then one cause per missed star and per
# spurious detection of every run, pooled over seeds, and a bar chart of the missed-star causes.
# Cross-key checks of the `diagnostics` section (candidates below the detection thresholds):
# coaddbliss.config. Targets of `rule all`: common.smk.

DIAGNOSTICS = config["diagnostics"]
#: The candidates of a method sit in a `candidates/` folder beside its detections.
CANDIDATE_CATALOG = result_path("catalogs/d{d}/candidates/seed{seed}.parquet")
SEP_CANDIDATE_CATALOG = result_path("baselines/sep/candidates/d{d}.parquet")
CANDIDATE_PATHS = {"encoder": CANDIDATE_CATALOG, "sep": SEP_CANDIDATE_CATALOG}
LOSS_TABLE = result_path("metrics/loss_accounting.parquet")
#: (method, d, seed) of every run the accounting covers, in input order (functions: common.smk)
LOSS_RUNS = [(m, d, s) for m in CATALOG_PATHS for d, s in method_runs(m)]


use rule infer_catalog as infer_candidates with:
    output:
        catalog=CANDIDATE_CATALOG,
    log:
        log_path("infer_candidates", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("infer_candidates", "d{d}", "seed{seed}")
    params:
        # encoder_config: infer_catalog's (`use rule ... with` replaces only the params it names)
        infer_config={
            **config["infer"],
            "threshold": DIAGNOSTICS["candidate_threshold"],
        },
        subtract_threshold=config["infer"]["threshold"],  # residual passes subtract detections


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


rule loss_accounting:
    input:
        truth=TEST_TRUTH,
        cubes=expand(TEST_CUBE, d=DEPTHS),  # N of each depth's test split (header only)
        catalogs=[CATALOG_PATHS[m].format(d=d, seed=s) for m, d, s in LOSS_RUNS],
        candidates=[CANDIDATE_PATHS[m].format(d=d, seed=s) for m, d, s in LOSS_RUNS],
        code=script_sources("loss_accounting.py"),
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
        code=script_sources("figure_table.py"),
    output:
        **figure_output("loss_accounting"),
    log:
        log_path("figure_loss_accounting", "loss_accounting"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="loss_accounting",
        options={},
    script:
        "../scripts/figure_table.py"
