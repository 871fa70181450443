# Stage 'curves' (docs/diagnostics.md): each method swept across its detection threshold in the
# dimmest bins, the reliability of `prob`, and the Bayes and crowded-field references for
# photometry. The sweeps read the low-threshold candidate catalogs (CANDIDATE_CATALOG,
# SEP_CANDIDATE_CATALOG: diagnostics.smk), so the encoder's starts at
# diagnostics.candidate_threshold and SEP's at diagnostics.sep_candidate_threshold. Cross-key checks of the `curves` section:
# coaddbliss.config. Targets of `rule all`: common.smk.

CURVES_RUN = result_path("metrics/curves/d{d}.parquet")
RELIABILITY_RUN = result_path("metrics/reliability/d{d}.parquet")
CURVES_TABLE = result_path("metrics/curves.parquet")
RELIABILITY_TABLE = result_path("metrics/reliability.parquet")
MATCHED_TABLE = result_path("metrics/matched_precision.parquet")
BAYES_TABLE = result_path("metrics/bayes_flux.parquet")
CROWDED_TABLE = result_path("metrics/crowded_flux.parquet")


rule operating_curves:
    input:
        truth=TEST_TRUTH,
        cube=TEST_CUBE,
        encoder=expand(CANDIDATE_CATALOG, seed=TRAIN_SEEDS, allow_missing=True),
        sep=SEP_CANDIDATE_CATALOG,
        code=script_sources("operating_curves.py"),
    output:
        depth_curves=CURVES_RUN,
        depth_reliability=RELIABILITY_RUN,
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
        encoder_floor=DIAGNOSTICS["candidate_threshold"],  # the q(n = 1) the catalogs are cut at
    script:
        "../scripts/operating_curves.py"


rule aggregate_curves:
    input:
        depth_curves=expand(CURVES_RUN, d=DEPTHS),
        depth_reliability=expand(RELIABILITY_RUN, d=DEPTHS),
        code=script_sources("aggregate_curves.py"),
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
        code=script_sources("bayes_flux.py"),
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
        code=script_sources("figure_table.py"),
    output:
        **figure_output("curves"),
    log:
        log_path("figure_curves", "curves"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="curves",
        options={
            "operating_points": {
                "encoder": config["infer"]["threshold"],
                "sep": config["baseline"]["threshold"],
            }
        },
    script:
        "../scripts/figure_table.py"


use rule figure_curves as figure_reliability with:
    input:
        table=rules.aggregate_curves.output.reliability,
        code=script_sources("figure_table.py"),
    output:
        **figure_output("reliability"),
    log:
        log_path("figure_reliability", "reliability"),
    params:
        figures=config["figures"],
        kind="reliability",
        options={},


# The crowded-field reference: the test stars' fluxes fitted at their images' true positions.
rule crowded_flux:
    input:
        truth=TEST_TRUTH,
        cubes=expand(TEST_CUBE, d=DEPTHS),
        psf=PSF_FITS,
        code=script_sources("crowded_flux.py"),
    output:
        table=CROWDED_TABLE,
    log:
        log_path("crowded_flux", "crowded_flux"),
    benchmark:
        benchmark_path("crowded_flux", "crowded_flux")
    conda:
        "../../envs/analysis.yaml"
    params:
        prior=config["prior"],
        background=config["survey"]["background"],
        depths=DEPTHS,
        evaluate={k: config["evaluate"][k] for k in ("mag_min", "mag_max", "mag_step")},
        fit_weights=config["infer"]["fit_weights"],
    script:
        "../scripts/crowded_flux.py"


use rule figure_curves as figure_bayes_flux with:
    input:
        table=rules.bayes_flux.output.table,
        crowded=rules.crowded_flux.output.table,
        code=script_sources("figure_table.py"),
    output:
        **figure_output("bayes_flux"),
    log:
        log_path("figure_bayes_flux", "bayes_flux"),
    params:
        figures=config["figures"],
        kind="bayes_flux",
        options={},
