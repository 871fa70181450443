# Stage 'evaluate' (issue 4, SPEC §6): score every predicted catalog of the test split against
# the truth, per run (method, d, seed), then aggregate the runs into one tidy table.
#
#   results/metrics/runs/{method}/d{d}/seed{seed}.parquet   point estimates + bootstrap replicates
#   results/metrics/metrics.parquet                         per seed and pooled, with bands
#
# Methods: "encoder" (results/catalogs/d{d}/seed{seed}.parquet, rule infer_catalog) and "sep"
# (results/baselines/sep/d{d}.parquet, rule baseline_sep; one pseudo-seed, 0), each included
# once the rule that writes its catalogs exists.

TEST_TRUTH = TRUTH_CATALOG.format(dataset="test")  # templates of simulate.smk
TEST_CUBE = IMAGE_CUBE.replace("{dataset}", "test")  # keeps the {d} wildcard
CATALOG_PATHS = {
    "encoder": "results/catalogs/d{d}/seed{seed}.parquet",
    "sep": "results/baselines/sep/d{d}.parquet",
}
#: The rule that writes each method's catalogs (the method is scored once that rule exists).
CATALOG_RULES = {"encoder": "infer_catalog", "sep": "baseline_sep"}
SEP_PSEUDO_SEED = 0
METRICS_RUN = "results/metrics/runs/{method}/d{d}/seed{seed}.parquet"
METRICS_TABLE = "results/metrics/metrics.parquet"


rule score_catalog:
    input:
        truth=TEST_TRUTH,
        cube=TEST_CUBE,
        catalog=predicted_catalog,  # functions: common.smk
        code=package_sources("metrics", "catalog", "images"),
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
        evaluate={k: v for k, v in config["evaluate"].items() if k != "band"},  # band: aggregate
    script:
        "../scripts/score_catalog.py"


rule aggregate_metrics:
    input:
        runs=metrics_runs,
        code=package_sources("metrics"),
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
