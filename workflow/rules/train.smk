# Stage 'train': one FAVI encoder per depth d and training seed (SPEC §5).
# A killed job resumes from results/models/d{d}/seed{seed}/resume.pt (undeclared on purpose:
# Snakemake deletes declared outputs before a rerun, and keeps this file).

ENCODER_CKPT = "results/models/d{d}/seed{seed}/encoder.pt"
TRAIN_HISTORY = "results/models/d{d}/seed{seed}/history.tsv"


rule train_encoder:
    input:
        train_cube=IMAGE_CUBE.format(dataset="train/seed{seed}", d="{d}"),
        train_truth=TRUTH_CATALOG.format(dataset="train/seed{seed}"),
        val_cube=IMAGE_CUBE.format(dataset="val/seed{seed}", d="{d}"),
        val_truth=TRUTH_CATALOG.format(dataset="val/seed{seed}"),
        code=package_sources(
            "encoder", "train", "tiles", "variational", "images", "catalog"
        ),
    output:
        ckpt=ENCODER_CKPT,
        history=TRAIN_HISTORY,
    log:
        log_path("train_encoder", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("train_encoder", "d{d}", "seed{seed}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        encoder=config["encoder"],
        image=config["image"],
        train=config["train"],
    script:
        "../scripts/train_encoder.py"
