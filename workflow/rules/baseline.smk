# Stage 'baseline': what a user gets without an encoder (SEP) and what nobody can beat (limits).

LIMITS_TABLE = "results/metrics/limits.parquet"


def baseline_targets():
    """Final outputs of this stage that `rule all` asks for."""
    return [LIMITS_TABLE]


rule physical_limits:
    input:
        code=package_sources("limits", "psf", "units"),
    output:
        table=LIMITS_TABLE,
    params:
        psf=config["psf"],
        background=config["survey"]["background"],
        depths=DEPTHS,
        limits=config["limits"],
        threshold=config["baseline"]["threshold"],
    log:
        log_path("physical_limits", "limits"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/physical_limits.py"
