"""Every default of a library config dataclass equals config.yaml's value for that key.

A default that disagrees with config.yaml would make a script, a benchmark or a test silently
use other settings than the paper's protocol; this fails when either side changes alone.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from pathlib import Path

import pytest
import yaml

import coaddbliss
from coaddbliss.baseline import SepSettings
from coaddbliss.bayes_flux import BayesFluxConfig
from coaddbliss.encoder import EncoderConfig
from coaddbliss.infer import InferConfig
from coaddbliss.loss_accounting import AccountingConfig
from coaddbliss.metrics import EvaluateConfig
from coaddbliss.plotting import FigureStyle
from coaddbliss.simulate import SimSettings
from coaddbliss.train import TrainConfig

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())

#: Config dataclass -> the config.yaml sections its fields come from ("a.b": a nested section).
SECTIONS = {
    EvaluateConfig: ("evaluate",),
    TrainConfig: ("train",),
    InferConfig: ("infer",),
    EncoderConfig: ("encoder", "image"),
    SepSettings: ("baseline",),
    SimSettings: ("survey", "image", "simulate"),
    AccountingConfig: ("image", "encoder", "evaluate", "diagnostics"),
    BayesFluxConfig: ("curves.bayes_flux",),
    FigureStyle: ("figures",),
}


def defaults(cls) -> dict:
    """Field name -> default of the fields that have one."""
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def as_config_value(value):
    """Tuples compare with YAML lists."""
    return list(value) if isinstance(value, tuple) else value


def mismatches(cls, sections: tuple[str, ...], config: dict) -> dict:
    """Field -> (default, config value) for defaults that differ from, or are missing in, config."""
    values = {}
    for section in sections:
        values.update(functools.reduce(dict.get, section.split("."), config))
    return {
        name: (default, values.get(name, "<no key>"))
        for name, default in defaults(cls).items()
        if name not in values or as_config_value(default) != values[name]
    }


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_defaults_equal_config_yaml(cls):
    assert defaults(cls), f"{cls.__name__} has no defaults: drop it from SECTIONS"
    assert mismatches(cls, SECTIONS[cls], CONFIG) == {}


def test_every_config_dataclass_with_defaults_is_checked():
    """A new config dataclass (one with `from_config`) and defaults must join SECTIONS."""
    package = Path(coaddbliss.__file__).parent
    for path in sorted(package.glob("*.py")):
        module = importlib.import_module(f"coaddbliss.{path.stem}")
        for obj in vars(module).values():
            if (
                dataclasses.is_dataclass(obj)
                and isinstance(obj, type)
                and obj.__module__ == module.__name__
                and hasattr(obj, "from_config")
                and defaults(obj)
            ):
                assert obj in SECTIONS, f"{obj.__name__} has defaults but no config check"


def test_a_default_that_disagrees_is_reported():
    @dataclasses.dataclass(frozen=True)
    class Fake:
        epochs: int = CONFIG["train"]["epochs"] + 1  # disagrees
        batch_size: int = CONFIG["train"]["batch_size"]  # agrees
        not_a_key: float = 1.0  # no such key

    assert mismatches(Fake, ("train",), CONFIG) == {
        "epochs": (CONFIG["train"]["epochs"] + 1, CONFIG["train"]["epochs"]),
        "not_a_key": (1.0, "<no key>"),
    }
