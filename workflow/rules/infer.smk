# Stage 'infer': each trained encoder catalogs the shared test split of its depth
# (docs/method.md §5, §8). With infer.calibrate, each encoder first catalogs its own
# validation split, a monotone map q(n = 1) -> P(star) and one scale per kind of posterior sd
# are fitted there (rule calibrate_encoder), and every test catalog of the encoder reports the
# calibrated prob and sds (coaddbliss.calibration).

ENCODER_CATALOG = result_path("catalogs/d{d}/seed{seed}.parquet")
#: the encoder's catalog of its validation split, cut as the test candidates are
VALIDATION_CATALOG = result_path("catalogs/d{d}/validation/seed{seed}.parquet")
CALIBRATION = result_path("models/d{d}/seed{seed}/calibration.parquet")
CALIBRATE = bool(config["infer"]["calibrate"])


rule infer_catalog:
    input:
        checkpoint=rules.train_encoder.output.checkpoint,
        cube=IMAGE_CUBE.format(dataset="test", d="{d}"),
        psf=PSF_FITS,  # residual passes render the stars found (infer.residual_passes)
        # the encoder's calibration when infer.calibrate, else nothing
        calibration=lambda wc: CALIBRATION.format(**wc) if CALIBRATE else [],
        code=script_sources("infer_catalog.py"),
    output:
        catalog=ENCODER_CATALOG,
    log:
        log_path("infer_catalog", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("infer_catalog", "d{d}", "seed{seed}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=2000,
        runtime=30,
    params:
        encoder_config={"encoder": config["encoder"], "image": config["image"]},
        infer_config=config["infer"],
        prior=config["prior"],  # infer.flux_fit's flux prior
    script:
        "../scripts/infer_catalog.py"


use rule infer_catalog as infer_validation with:
    input:
        checkpoint=rules.train_encoder.output.checkpoint,
        cube=IMAGE_CUBE.format(dataset="val/seed{seed}", d="{d}"),
        psf=PSF_FITS,
        code=rules.infer_catalog.input.code,
    output:
        catalog=VALIDATION_CATALOG,
    log:
        log_path("infer_validation", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("infer_validation", "d{d}", "seed{seed}")
    params:
        # encoder_config: infer_catalog's; q itself (uncalibrated), down to the candidate cut
        infer_config={
            **config["infer"],
            "threshold": config["diagnostics"]["candidate_threshold"],
            "calibrate": False,
        },
        subtract_threshold=config["infer"]["threshold"],  # residual passes subtract detections


rule calibrate_encoder:
    input:
        catalog=VALIDATION_CATALOG,
        truth=TRUTH_CATALOG.format(dataset="val/seed{seed}"),
        cube=IMAGE_CUBE.format(dataset="val/seed{seed}", d="{d}"),  # N (header only)
        code=script_sources("calibrate_encoder.py"),
    output:
        calibration=CALIBRATION,
    log:
        log_path("calibrate_encoder", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("calibrate_encoder", "d{d}", "seed{seed}")
    conda:
        "../../envs/analysis.yaml"
    params:
        bins=config["infer"]["calibration_bins"],
        mag_edges=config["infer"]["calibration_mag_edges"],
        threshold=config["infer"]["threshold"],  # the sds of the detections the catalog keeps
        max_offset=config["evaluate"]["max_offset"],
        levels=config["evaluate"]["coverage_levels"],  # the intervals the sd scales fit
    script:
        "../scripts/calibrate_encoder.py"
