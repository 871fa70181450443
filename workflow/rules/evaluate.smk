# Stage 'evaluate' (docs/evaluation.md, docs/method.md §6): score every predicted catalog of the
# test split against the truth, per run (method, d, seed), then aggregate the runs into one tidy
# table: point estimates and bootstrap replicates per run; per seed and pooled, with bands.
#
# Methods: "encoder" (ENCODER_CATALOG, rule infer_catalog) and "sep" (SEP_CATALOG, rule
# baseline_sep; one pseudo-seed, 0).

TEST_TRUTH = TRUTH_CATALOG.format(dataset="test")  # templates of simulate.smk
TEST_CUBE = IMAGE_CUBE.replace("{dataset}", "test")  # keeps the {d} wildcard
CATALOG_PATHS = {"encoder": ENCODER_CATALOG, "sep": SEP_CATALOG}
SEP_PSEUDO_SEED = 0
METRICS_RUN = result_path("metrics/runs/{method}/d{d}/seed{seed}.parquet")
METRICS_TABLE = result_path("metrics/metrics.parquet")


rule score_catalog:
    input:
        truth=TEST_TRUTH,
        cube=TEST_CUBE,
        catalog=predicted_catalog,  # functions: common.smk
        code=script_sources("score_catalog.py"),
    output:
        table=METRICS_RUN,
    log:
        log_path("score_catalog", "{method}", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("score_catalog", "{method}", "d{d}", "seed{seed}")
    wildcard_constraints:
        method="|".join(CATALOG_PATHS),
    conda:
        "../../envs/analysis.yaml"
    params:
        method="{method}",  # the run's label in its table (the ablation's: its cell)
        evaluate={k: v for k, v in config["evaluate"].items() if k != "band"},  # band: aggregate
    script:
        "../scripts/score_catalog.py"


rule aggregate_metrics:
    input:
        runs=metrics_runs,
        code=script_sources("aggregate_metrics.py"),
    output:
        table=METRICS_TABLE,
    log:
        log_path("aggregate_metrics", "metrics"),
    conda:
        "../../envs/analysis.yaml"
    params:
        band=config["evaluate"]["band"],
    script:
        "../scripts/aggregate_metrics.py"
