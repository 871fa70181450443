# Stage 'figures' (issue 4): the paper's figures from the metrics table and the test images.
# Plotting never shares a rule with computing: editing plotting.py or a `figures` config key
# redraws these and nothing else.
#
#   results/figures/scene.{png,pdf}         figure 1: one test scene at every depth
#   results/figures/metrics.{png,pdf}       figure 2: precision, recall, flux residual vs mag
#   results/figures/calibration.{png,pdf}   realized vs nominal coverage per d

FIGURE = "results/figures/{name}.{ext}"


rule figure_scene:
    input:
        truth=TEST_TRUTH,
        cubes=expand(TEST_CUBE, d=DEPTHS),
        code=package_sources("plotting", "metrics", "images", "catalog"),
    output:
        png=report(
            FIGURE.format(name="scene", ext="png"),
            caption="../report/scene.rst",
            category="Figures",
        ),
        pdf=FIGURE.format(name="scene", ext="pdf"),
    log:
        log_path("figure_scene", "scene"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/figure_scene.py"


rule figure_metrics:
    input:
        table=rules.aggregate_metrics.output.table,
        limits=limits_table,  # none until rule physical_limits exists
        code=package_sources("plotting"),
    output:
        png=report(
            FIGURE.format(name="metrics", ext="png"),
            caption="../report/metrics.rst",
            category="Figures",
        ),
        pdf=FIGURE.format(name="metrics", ext="pdf"),
    log:
        log_path("figure_metrics", "metrics"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/figure_metrics.py"


rule figure_calibration:
    input:
        table=rules.aggregate_metrics.output.table,
        code=package_sources("plotting"),
    output:
        png=report(
            FIGURE.format(name="calibration", ext="png"),
            caption="../report/calibration.rst",
            category="Figures",
        ),
        pdf=FIGURE.format(name="calibration", ext="pdf"),
    log:
        log_path("figure_calibration", "calibration"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/figure_calibration.py"
