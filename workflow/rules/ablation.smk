# Stage 'ablation' (docs/ablation.md): how much does the original code's white-noise shortcut
# (noise drawn after alignment) matter? Encoders trained on white-noise coadds and the main
# workflow's physical encoders each catalog both kinds of test coadds; every cell is scored by
# the shared metrics code. Only planned when config `ablation.enabled` (input functions:
# common.smk). Physical on physical is the main workflow's catalog and run table: not recomputed.
#
# The white-noise rules are the main rules (`use rule ... with:`): same script, code inputs,
# params, threads, resources and env by construction; only paths and the noise stage change.

# white-noise cubes; their truth is the physical data set's TRUTH_CATALOG
ABLATION_CUBE = result_path("ablation/white/data/{dataset}/d{d}.fits")
ABLATION_CKPT = result_path("ablation/white/models/d{d}/seed{seed}/encoder.pt")
ABLATION_HISTORY = result_path("ablation/white/models/d{d}/seed{seed}/history.tsv")
#: one cell (train noise, test noise) of one run (d, seed)
ABLATION_CELL = "train_{train}/test_{test}/d{d}/seed{seed}"
ABLATION_CATALOG = result_path(f"ablation/catalogs/{ABLATION_CELL}.parquet")
ABLATION_RUN = result_path(f"ablation/metrics/runs/{ABLATION_CELL}.parquet")
ABLATION_TABLE = result_path("ablation/ablation.parquet")


wildcard_constraints:
    train="|".join(NOISE_MODELS),
    test="|".join(NOISE_MODELS),


use rule simulate_images as ablation_simulate_images with:
    output:
        cubes=expand(ABLATION_CUBE, d=ABLATION_DEPTHS, allow_missing=True),
    log:
        log_path("ablation_simulate_images", "{dataset}"),
    benchmark:
        benchmark_path("ablation_simulate_images", "{dataset}")
    params:
        depths=ABLATION_DEPTHS,
        noise_stage="after_alignment",  # the white-noise shortcut: the point of the ablation


use rule train_encoder as ablation_train_encoder with:
    input:
        train_cube=ABLATION_CUBE.format(dataset="train/seed{seed}", d="{d}"),
        train_truth=rules.train_encoder.input.train_truth,  # paired with the physical data
        val_cube=ABLATION_CUBE.format(dataset="val/seed{seed}", d="{d}"),
        val_truth=rules.train_encoder.input.val_truth,
        code=rules.train_encoder.input.code,
    output:
        checkpoint=ABLATION_CKPT,
        history=ABLATION_HISTORY,
    log:
        log_path("ablation_train_encoder", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("ablation_train_encoder", "d{d}", "seed{seed}")


use rule infer_catalog as ablation_infer_catalog with:
    input:
        checkpoint=ablation_encoder,
        cube=ablation_test_cube,
        psf=PSF_FITS,
        code=rules.infer_catalog.input.code,
    output:
        catalog=ABLATION_CATALOG,
    log:
        log_path("ablation_infer_catalog", ABLATION_CELL),
    benchmark:
        benchmark_path("ablation_infer_catalog", ABLATION_CELL)
    params:
        # encoder_config: infer_catalog's; the ablation compares q(n = 1) itself: its encoders
        # have no prob calibration (infer.calibrate)
        infer_config={**config["infer"], "calibrate": False},


use rule score_catalog as ablation_score_catalog with:
    input:
        truth=TEST_TRUTH,  # the same catalog behind both test cubes
        cube=ablation_test_cube,
        catalog=rules.ablation_infer_catalog.output.catalog,
        code=rules.score_catalog.input.code,
    output:
        table=ABLATION_RUN,
    log:
        log_path("ablation_score_catalog", ABLATION_CELL),
    benchmark:
        benchmark_path("ablation_score_catalog", ABLATION_CELL)
    params:
        method=lambda wc: f"train_{wc.train}/test_{wc.test}",  # the run's label in its table


rule ablation_table:
    input:
        runs=ablation_runs,
        code=script_sources("ablation_table.py"),
    output:
        table=ABLATION_TABLE,
    log:
        log_path("ablation_table", "ablation"),
    conda:
        "../../envs/analysis.yaml"
    params:
        cells=ablation_run_cells(),
        band=config["evaluate"]["band"],
    script:
        "../scripts/ablation_table.py"


rule figure_ablation:
    input:
        table=rules.ablation_table.output.table,
        code=script_sources("figure_table.py"),
    output:
        **figure_output("ablation"),
    log:
        log_path("figure_ablation", "ablation"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        kind="ablation",
        options={},
    script:
        "../scripts/figure_table.py"
