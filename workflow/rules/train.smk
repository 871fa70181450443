# Stage 'train': one FAVI encoder per depth d and training seed (docs/method.md §5).
# A killed job resumes from resume.pt next to ENCODER_CKPT (undeclared on purpose: Snakemake
# deletes declared outputs before a rerun, and keeps this file; docs/reliability.md).

ENCODER_CKPT = result_path("models/d{d}/seed{seed}/encoder.pt")
TRAIN_HISTORY = result_path("models/d{d}/seed{seed}/history.tsv")


rule train_encoder:
    input:
        train_cube=IMAGE_CUBE.format(dataset="train/seed{seed}", d="{d}"),
        train_truth=TRUTH_CATALOG.format(dataset="train/seed{seed}"),
        val_cube=IMAGE_CUBE.format(dataset="val/seed{seed}", d="{d}"),
        val_truth=TRUTH_CATALOG.format(dataset="val/seed{seed}"),
        code=script_sources("train_encoder.py"),
    output:
        checkpoint=ENCODER_CKPT,
        history=TRAIN_HISTORY,
    log:
        log_path("train_encoder", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("train_encoder", "d{d}", "seed{seed}")
    conda:
        "../../envs/torch.yaml"
    # One thread: on 2 cores two one-thread jobs train 1.2-1.35x more images/s than one
    # two-thread job (docs/performance.md); with a GPU the thread only feeds the device.
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        encoder_config={"encoder": config["encoder"], "image": config["image"]},
        train_config=config["train"],
    script:
        "../scripts/train_encoder.py"
