# Stage 'ablation' (issue 6): how much does the original code's white-noise shortcut (noise drawn
# after alignment) matter? Encoders trained on white-noise coadds and the main workflow's
# physical encoders each catalog both kinds of test coadds; every cell is scored by the shared
# metrics code. Only planned when config `ablation.enabled` (input functions: common.smk).
#
#   results/ablation/white/data/{dataset}/d{d}.fits                  white-noise cubes (truth
#                                                                    shared with results/data)
#   results/ablation/white/models/d{d}/seed{seed}/encoder.pt         white-noise encoders
#   results/ablation/catalogs/train_{train}/test_{test}/d{d}/seed{seed}.parquet
#   results/ablation/metrics/runs/train_{train}/test_{test}/d{d}/seed{seed}.parquet
#   results/ablation/ablation.parquet                                the tidy table
#   results/figures/ablation.{png,pdf}                               the figure
#
# Physical on physical is the main workflow's catalog and run table: it is not recomputed.

ABLATION_CUBE = "results/ablation/white/data/{dataset}/d{d}.fits"
ABLATION_CKPT = "results/ablation/white/models/d{d}/seed{seed}/encoder.pt"
ABLATION_HISTORY = "results/ablation/white/models/d{d}/seed{seed}/history.tsv"
ABLATION_CATALOG = (
    "results/ablation/catalogs/train_{train}/test_{test}/d{d}/seed{seed}.parquet"
)
ABLATION_RUN = (
    "results/ablation/metrics/runs/train_{train}/test_{test}/d{d}/seed{seed}.parquet"
)
ABLATION_TABLE = "results/ablation/ablation.parquet"


wildcard_constraints:
    train="|".join(NOISE_MODELS),
    test="|".join(NOISE_MODELS),


rule ablation_simulate_images:
    input:
        psf=rules.psf.output.fits,
        truth=rules.simulate_catalog.output.truth,  # the physical data set's own catalog: paired
        code=package_sources("simulate", "psf", "rng", "images", "catalog"),
    output:
        cubes=expand(ABLATION_CUBE, d=ABLATION_DEPTHS, allow_missing=True),
    log:
        log_path("ablation_simulate_images", "{dataset}"),
    benchmark:
        benchmark_path("ablation_simulate_images", "{dataset}")
    conda:
        "../../envs/sim.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        survey=config["survey"],
        image=config["image"],
        split=lambda wc: dataset_split(wc.dataset),
        seed=lambda wc: dataset_seed(wc.dataset),
        depths=ABLATION_DEPTHS,
        noise=config["simulate"]["noise"],
        noise_stage="after_alignment",  # the only difference from rule simulate_images
        chunk_size=config["simulate"]["chunk_size"],
    script:
        "../scripts/simulate_images.py"


rule ablation_train_encoder:
    input:
        train_cube=ABLATION_CUBE.format(dataset="train/seed{seed}", d="{d}"),
        train_truth=TRUTH_CATALOG.format(dataset="train/seed{seed}"),
        val_cube=ABLATION_CUBE.format(dataset="val/seed{seed}", d="{d}"),
        val_truth=TRUTH_CATALOG.format(dataset="val/seed{seed}"),
        code=package_sources(
            "encoder", "train", "tiles", "variational", "images", "catalog"
        ),
    output:
        ckpt=ABLATION_CKPT,
        history=ABLATION_HISTORY,
    log:
        log_path("ablation_train_encoder", "d{d}", "seed{seed}"),
    benchmark:
        benchmark_path("ablation_train_encoder", "d{d}", "seed{seed}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        # the same slices as rule train_encoder: a fair comparison
        encoder=config["encoder"],
        image=config["image"],
        train=config["train"],
    script:
        "../scripts/train_encoder.py"


rule ablation_infer_catalog:
    input:
        ckpt=ablation_encoder,
        cube=ablation_test_cube,
        code=package_sources("encoder", "infer", "train", "variational", "catalog"),
    output:
        catalog=ABLATION_CATALOG,
    log:
        log_path(
            "ablation_infer_catalog",
            "train_{train}",
            "test_{test}",
            "d{d}",
            "seed{seed}",
        ),
    benchmark:
        benchmark_path(
            "ablation_infer_catalog",
            "train_{train}",
            "test_{test}",
            "d{d}",
            "seed{seed}",
        )
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=2000,
        runtime=30,
    params:
        encoder=config["encoder"],
        image=config["image"],
        infer=config["infer"],
    script:
        "../scripts/infer_catalog.py"


rule ablation_score_catalog:
    input:
        truth=TEST_TRUTH,  # the same catalog behind both test cubes
        cube=ablation_test_cube,
        catalog=rules.ablation_infer_catalog.output.catalog,
        code=package_sources("metrics", "catalog", "images"),
    output:
        table=ABLATION_RUN,
    log:
        log_path(
            "ablation_score_catalog",
            "train_{train}",
            "test_{test}",
            "d{d}",
            "seed{seed}",
        ),
    benchmark:
        benchmark_path(
            "ablation_score_catalog",
            "train_{train}",
            "test_{test}",
            "d{d}",
            "seed{seed}",
        )
    conda:
        "../../envs/analysis.yaml"
    params:
        evaluate={k: v for k, v in config["evaluate"].items() if k != "band"},  # as score_catalog
        method=lambda wc: f"train_{wc.train}/test_{wc.test}",
    script:
        "../scripts/score_catalog.py"


rule ablation_table:
    input:
        runs=ablation_runs,
        code=package_sources("metrics"),
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
        code=package_sources("plotting"),
    output:
        png=report(
            FIGURE.format(name="ablation", ext="png"),
            caption="../report/ablation.rst",
            category="Figures",
        ),
        pdf=FIGURE.format(name="ablation", ext="pdf"),
    log:
        log_path("figure_ablation", "ablation"),
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/figure_ablation.py"
