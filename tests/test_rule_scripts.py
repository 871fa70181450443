"""Every rule's named inputs, outputs and params are exactly what its script's `main` takes.

Rule scripts call `main(**rule_kwargs(snakemake, casts...), extra=...)` (coaddbliss.scripting):
a rule that gains an input its script does not accept, or a script that needs a name its rule
does not give, fails only when the job runs. This reads the workflow with Snakemake's API and each
script's `main` with `ast`, so the mismatch fails here, in the fast tier, without running a job.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from conftest import REPO
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import (
    ConfigSettings,
    OutputSettings,
    ResourceSettings,
    StorageSettings,
)

from coaddbliss.scripting import CODE_INPUT

SCRIPTS = REPO / "workflow" / "scripts"


def workflow_rules(configfiles: list[Path]) -> list:
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, dryrun=True)) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=configfiles),
            storage_settings=StorageSettings(),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )._workflow
        return [rule for rule in workflow.rules if rule.script]


def script_interface(path: Path) -> tuple[set[str], set[str], set[str], set[str]]:
    """(main's parameters, those without a default, names rule_kwargs casts, extra kwargs)."""
    tree = ast.parse(path.read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    args = main.args
    accepted = {a.arg for a in args.args + args.kwonlyargs}
    defaults = [a.arg for a in args.args[len(args.args) - len(args.defaults) :]]
    defaults += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d]
    if args.kwarg:  # main(**rest) hands `rest` on to a library function: that one's signature
        forwarded = forwarded_to(tree, main, args.kwarg.arg)
        accepted |= set(forwarded.parameters) - {"device"}  # passed by main itself
        defaults += [n for n, p in forwarded.parameters.items() if p.default is not p.empty]
    dicts = {  # name = dict(k=...): the casts some scripts build before the call
        node.targets[0].id: {k.arg for k in node.value.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "dict" and isinstance(node.targets[0], ast.Name)
    }  # fmt: skip
    casts, extra = set(), set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None)
        if name == "rule_kwargs":
            for k in node.keywords:
                casts |= {k.arg} if k.arg else dicts.get(getattr(k.value, "id", None), set())
        elif name == "main":
            extra |= {k.arg for k in node.keywords if k.arg}
    return accepted, accepted - set(defaults), casts, extra


def forwarded_to(tree: ast.Module, main: ast.FunctionDef, kwarg: str) -> inspect.Signature:
    """The signature of the coaddbliss function `main` calls with **kwarg."""
    call = next(
        n for n in ast.walk(main) if isinstance(n, ast.Call)
        and any(k.arg is None and getattr(k.value, "id", None) == kwarg for k in n.keywords)
    )  # fmt: skip
    name = call.func.id
    module = next(
        n.module for n in tree.body
        if isinstance(n, ast.ImportFrom) and any(a.name == name for a in n.names)
    )  # fmt: skip
    return inspect.signature(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("overlay", [None, "config/demo.yaml"])
def test_rules_give_their_scripts_exactly_the_names_main_takes(overlay):
    configfiles = [REPO / "config.yaml"] + ([REPO / overlay] if overlay else [])
    rules = workflow_rules(configfiles)
    assert len(rules) > 10
    for rule in rules:
        script = SCRIPTS / Path(rule.script).name
        accepted, required, casts, extra = script_interface(script)
        named = [n for n in rule.input._names if n != CODE_INPUT]
        named += list(rule.output._names) + list(rule.params._names)
        where = f"rule {rule.name} -> {script.name}"
        assert not set(named) - accepted, f"{where}: main does not take {set(named) - accepted}"
        wildcards = set(rule.wildcard_names)
        assert not casts - set(named) - wildcards, f"{where}: casts {casts - set(named)} unknown"
        given = set(named) | (casts & wildcards) | extra
        assert not required - given, f"{where}: main needs {required - given}, not given"


def test_the_check_sees_a_missing_input(tmp_path):
    """The interface reader finds a required parameter that no rule name would fill."""
    script = tmp_path / "s.py"
    script.write_text(
        "def main(*, cube: str, psf: str, out: str, seed: int = 0) -> None: ...\n"
        "casts = dict(seed=int)\n"
        "main(**rule_kwargs(snakemake, **casts, d=int), device=1)\n"
    )
    accepted, required, casts, extra = script_interface(script)
    assert accepted == {"cube", "psf", "out", "seed"} and required == {"cube", "psf", "out"}
    assert casts == {"seed", "d"} and extra == {"device"}
