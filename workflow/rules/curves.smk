# Stage 'curves' (docs/evaluation.md): each method swept across its detection threshold in the
# dimmest bins, the reliability of `prob`, and the Bayes reference for photometry.
#
#   results/metrics/curves/d{d}.parquet, reliability/d{d}.parquet  one depth (operating_curves)
#   results/metrics/curves.parquet          precision-recall per method, d, seed, range, threshold
#   results/metrics/reliability.parquet     detections per prob bin and the fraction matching
#   results/metrics/matched_precision.parquet  recall at SEP's default precision and fixed levels
#   results/metrics/bayes_flux.parquet      exact posterior-median flux residuals (bayes_flux)
#   results/figures/{curves,reliability,bayes_flux}.{png,pdf}
#
# The sweeps read the low-threshold candidate catalogs (CANDIDATE_CATALOG, SEP_CANDIDATE_CATALOG:
# diagnostics.smk) when their rules exist, else the default catalogs: then the encoder sweep
# starts at infer.threshold and SEP's at baseline.threshold. Templates are looked up when a job
# is planned, so the include order does not matter.

CURVES_RUN = "results/metrics/curves/d{d}.parquet"
RELIABILITY_RUN = "results/metrics/reliability/d{d}.parquet"
CURVES_TABLE = "results/metrics/curves.parquet"
RELIABILITY_TABLE = "results/metrics/reliability.parquet"
MATCHED_TABLE = "results/metrics/matched_precision.parquet"
BAYES_TABLE = "results/metrics/bayes_flux.parquet"


def candidates_exist(method):
    """True when diagnostics.smk's low-threshold catalogs of `method` have a rule."""
    return workflow.is_rule(
        "infer_candidates" if method == "encoder" else "sep_candidates"
    )


def curve_encoder_catalogs(wildcards):
    """Encoder catalogs of depth d, one per training seed (candidates when they exist)."""
    template = CANDIDATE_CATALOG if candidates_exist("encoder") else ENCODER_CATALOG
    return expand(template, d=wildcards.d, seed=TRAIN_SEEDS)


def curve_sep_catalog(wildcards):
    """SEP catalog of depth d (the low-threshold candidates when they exist)."""
    template = SEP_CANDIDATE_CATALOG if candidates_exist("sep") else SEP_CATALOG
    return template.format(d=wildcards.d)


def encoder_floor():
    """The q(n = 1) the swept encoder catalogs were cut at."""
    if candidates_exist("encoder"):
        return float(config["diagnostics"]["candidate_threshold"])
    return float(config["infer"]["threshold"])


def curves_targets():
    """Tables and figures of this stage, once encoder and SEP catalogs have rules."""
    if not (workflow.is_rule("infer_catalog") and workflow.is_rule("baseline_sep")):
        return [BAYES_TABLE] + rules.figure_bayes_flux.output
    return (
        [CURVES_TABLE, RELIABILITY_TABLE, MATCHED_TABLE, BAYES_TABLE]
        + rules.figure_curves.output
        + rules.figure_reliability.output
        + rules.figure_bayes_flux.output
    )


rule operating_curves:
    input:
        truth=TEST_TRUTH,
        cube=TEST_CUBE,
        encoder=curve_encoder_catalogs,
        sep=curve_sep_catalog,
        code=package_sources(
            "operating_curves",
            "metrics",
            "limits",
            "psf",
            "units",
            "catalog",
            "images",
        ),
    output:
        curves=CURVES_RUN,
        reliability=RELIABILITY_RUN,
    log:
        log_path("operating_curves", "d{d}"),
    benchmark:
        benchmark_path("operating_curves", "d{d}")
    conda:
        "../../envs/analysis.yaml"
    params:
        curves={k: v for k, v in config["curves"].items() if k != "bayes_flux"},
        max_offset=config["evaluate"]["max_offset"],
        psf=config["psf"],
        background=config["survey"]["background"],
        image=config["image"],
        seeds=TRAIN_SEEDS,
        encoder_floor=lambda wildcards: encoder_floor(),
    script:
        "../scripts/operating_curves.py"


rule aggregate_curves:
    input:
        curves=expand(CURVES_RUN, d=DEPTHS),
        reliability=expand(RELIABILITY_RUN, d=DEPTHS),
        code=package_sources("operating_curves", "metrics"),
    output:
        curves=CURVES_TABLE,
        reliability=RELIABILITY_TABLE,
        matched=MATCHED_TABLE,
    log:
        log_path("aggregate_curves", "curves"),
    conda:
        "../../envs/analysis.yaml"
    params:
        sep_threshold=config["baseline"]["threshold"],
        levels=config["curves"]["precision_levels"],
    script:
        "../scripts/aggregate_curves.py"


rule bayes_flux:
    input:
        code=package_sources("bayes_flux", "limits", "psf", "units"),
    output:
        table=BAYES_TABLE,
    log:
        log_path("bayes_flux", "bayes_flux"),
    benchmark:
        benchmark_path("bayes_flux", "bayes_flux")
    conda:
        "../../envs/analysis.yaml"
    params:
        bayes=config["curves"]["bayes_flux"],
        psf=config["psf"],
        prior=config["prior"],
        background=config["survey"]["background"],
        depths=DEPTHS,
        evaluate={k: config["evaluate"][k] for k in ("mag_min", "mag_max", "mag_step")},
    script:
        "../scripts/bayes_flux.py"


rule figure_curves:
    input:
        table=rules.aggregate_curves.output.curves,
        code=package_sources("plot_curves", "plotting"),
    output:
        png=FIGURE.format(name="curves", ext="png"),
        pdf=FIGURE.format(name="curves", ext="pdf"),
    log:
        log_path("figure_curves", "curves"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="curves",
        operating_points={
            "encoder": config["infer"]["threshold"],
            "sep": config["baseline"]["threshold"],
        },
    script:
        "../scripts/figure_curves.py"


rule figure_reliability:
    input:
        table=rules.aggregate_curves.output.reliability,
        code=package_sources("plot_curves", "plotting"),
    output:
        png=FIGURE.format(name="reliability", ext="png"),
        pdf=FIGURE.format(name="reliability", ext="pdf"),
    log:
        log_path("figure_reliability", "reliability"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="reliability",
        operating_points={},
    script:
        "../scripts/figure_curves.py"


rule figure_bayes_flux:
    input:
        table=rules.bayes_flux.output.table,
        code=package_sources("plot_curves", "plotting"),
    output:
        png=FIGURE.format(name="bayes_flux", ext="png"),
        pdf=FIGURE.format(name="bayes_flux", ext="pdf"),
    log:
        log_path("figure_bayes_flux", "bayes_flux"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="bayes_flux",
        operating_points={},
    script:
        "../scripts/figure_curves.py"
