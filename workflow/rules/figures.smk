# Stage 'figures' (docs/evaluation.md): the paper's figures from the metrics table and the test
# images. Plotting never shares a rule with computing: editing plotting.py or a `figures` config
# key redraws these and nothing else. Figure 1: one test scene at every depth; figure 2:
# precision, recall, flux residual vs mag; calibration: realized vs nominal coverage per d.

FIGURE = result_path("figures/{name}.{ext}")


rule figure_scene:
    input:
        truth=TEST_TRUTH,
        cubes=expand(TEST_CUBE, d=DEPTHS),
        code=script_sources("figure_scene.py"),
    output:
        **figure_output("scene"),
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
        limits=[rules.physical_limits.output.table],  # a list: the script takes 0 or 1
        code=script_sources("figure_metrics.py"),
    output:
        **figure_output("metrics"),
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
        code=script_sources("figure_table.py"),
    output:
        **figure_output("calibration"),
    log:
        log_path("figure_calibration", "calibration"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="calibration",
        options={},
    script:
        "../scripts/figure_table.py"
