# Stage 'infer': each trained encoder catalogs the shared test split of its depth
# (docs/method.md §5, §8).

ENCODER_CATALOG = result_path("catalogs/d{d}/seed{seed}.parquet")


rule infer_catalog:
    input:
        checkpoint=rules.train_encoder.output.checkpoint,
        cube=IMAGE_CUBE.format(dataset="test", d="{d}"),
        psf=PSF_FITS,  # residual passes render the stars found (infer.residual_passes)
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
    script:
        "../scripts/infer_catalog.py"
