"""The rule scripts' adapter: a job's names become main's keyword arguments, cast once."""

from types import SimpleNamespace

import pytest
import torch
from snakemake.iocontainers import Namedlist

from coaddbliss.device import job_device
from coaddbliss.scripting import rule_kwargs


def named(**items) -> Namedlist:
    return Namedlist(fromdict=items)


def job(**sections) -> SimpleNamespace:
    """A stand-in for the `snakemake` object of a script: input, output, params, wildcards."""
    empty = {k: named() for k in ("input", "output", "params", "wildcards")}
    return SimpleNamespace(rule="probe", **{**empty, **sections})


def test_inputs_outputs_and_params_are_keyword_arguments_but_code():
    cubes = Namedlist(["d1.fits", "d2.fits"])
    smk = job(
        input=named(truth="truth.parquet", cubes=cubes, code=["src/coaddbliss/x.py"]),
        output=named(table="out.parquet"),
        params=named(band=[0.25, 0.75], evaluate={"mag_min": 20}),
        wildcards=named(d="2", seed="1"),
    )
    kwargs = rule_kwargs(smk, band=tuple)
    assert kwargs == {
        "truth": "truth.parquet", "cubes": ["d1.fits", "d2.fits"], "table": "out.parquet",
        "band": (0.25, 0.75), "evaluate": {"mag_min": 20},
    }  # fmt: skip
    assert type(kwargs["cubes"]) is list  # a plain list, not Snakemake's Namedlist


def test_a_cast_brings_in_its_wildcard_and_params_win():
    smk = job(params=named(method="train_white/test_physical"),
              wildcards=named(method="encoder", d="2", seed="1", train="white"))  # fmt: skip
    kwargs = rule_kwargs(smk, d=int, seed=int, method=str)
    assert kwargs == {"method": "train_white/test_physical", "d": 2, "seed": 1}


def test_unknown_and_clashing_names_are_errors():
    with pytest.raises(KeyError, match="no input, output, param or wildcard 'd'"):
        rule_kwargs(job(), d=int)
    clash = job(input=named(curves="in.parquet"), output=named(curves="out.parquet"))
    with pytest.raises(ValueError, match="'curves'"):
        rule_kwargs(clash)


def test_job_device_takes_threads_and_the_gpu_resource():
    before = torch.get_num_threads()
    try:
        device = job_device(SimpleNamespace(threads=1, resources=named(gpu=0)))
        assert device == torch.device("cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
