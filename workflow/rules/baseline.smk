# Stage 'baseline': what a user gets without an encoder (SEP) and what nobody can beat (limits);
# docs/baseline-and-limits.md.

LIMITS_TABLE = result_path("metrics/limits.parquet")
SEP_CATALOG = result_path("baselines/sep/d{d}.parquet")


rule physical_limits:
    input:
        code=script_sources("physical_limits.py"),
    output:
        table=LIMITS_TABLE,
    log:
        log_path("physical_limits", "limits"),
    conda:
        "../../envs/analysis.yaml"
    params:
        psf=config["psf"],
        background=config["survey"]["background"],
        depths=DEPTHS,
        limits=config["limits"],
        threshold=config["baseline"]["threshold"],
    script:
        "../scripts/physical_limits.py"


rule baseline_sep:
    input:
        cube=IMAGE_CUBE.format(dataset="test", d="{d}"),
        psf=rules.psf.output.fits,
        code=script_sources("baseline_sep.py"),
    output:
        catalog=SEP_CATALOG,
    log:
        log_path("baseline_sep", "d{d}"),
    benchmark:
        benchmark_path("baseline_sep", "d{d}")
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        baseline=config["baseline"],
        background=config["survey"]["background"],
    script:
        "../scripts/baseline_sep.py"
