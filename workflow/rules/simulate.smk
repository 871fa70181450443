# Stage 'simulate': PSF image, truth catalogs, single-exposure and coadd image cubes
# (docs/method.md §3-§4).

PSF_FITS = result_path("psf.fits")
TRUTH_CATALOG = result_path("data/{dataset}/truth.parquet")
IMAGE_CUBE = result_path("data/{dataset}/d{d}.fits")


rule psf:
    input:
        code=script_sources("make_psf.py"),
    output:
        fits=PSF_FITS,
    log:
        log_path("psf", "psf"),
    conda:
        "../../envs/sim.yaml"
    params:
        psf=config["psf"],
        pixel_scale=config["survey"]["pixel_scale"],
    script:
        "../scripts/make_psf.py"


rule simulate_catalog:
    input:
        code=script_sources("simulate_catalog.py"),
    output:
        truth=TRUTH_CATALOG,
    log:
        log_path("simulate_catalog", "{dataset}"),
    conda:
        "../../envs/sim.yaml"
    params:
        prior=config["prior"],
        image=config["image"],
        split=lambda wc: dataset_split(wc.dataset),
        seed=lambda wc: dataset_seed(wc.dataset),
        n_scenes=lambda wc: dataset_size(wc.dataset),
    script:
        "../scripts/simulate_catalog.py"


rule simulate_images:
    input:
        psf=rules.psf.output.fits,
        truth=rules.simulate_catalog.output.truth,
        code=script_sources("simulate_images.py"),
    output:
        # every depth in one pass: depth d averages the first d of the scene's exposures
        cubes=expand(IMAGE_CUBE, d=DEPTHS, allow_missing=True),
    log:
        log_path("simulate_images", "{dataset}"),
    benchmark:
        benchmark_path("simulate_images", "{dataset}")
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
        depths=DEPTHS,
        noise=config["simulate"]["noise"],
        noise_stage=config["simulate"]["noise_stage"],
        chunk_size=config["simulate"]["chunk_size"],
    script:
        "../scripts/simulate_images.py"
