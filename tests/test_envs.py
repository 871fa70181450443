"""Conda envs: they parse, pin what pyproject.toml pins, cover their rules' imports, and every
rule that runs code names one. Checked statically: conda channels are out of reach here."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULES_DIR = REPO / "workflow" / "rules"
#: conda-forge name -> PyPI name, where they differ.
CONDA_TO_PYPI = {"pytorch": "torch"}
#: import name -> PyPI distribution, where they differ.
MODULE_TO_PYPI = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow"}
#: provided by Snakemake itself when it runs a `script:` (its preamble), not by the env.
SNAKEMAKE_PROVIDED = {"snakemake"}


def pyproject_pins() -> dict[str, str]:
    """PyPI name -> version specifier, e.g. {'numpy': '==2.4.6', 'torch': '>=2.4,<3'}."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dep.strip())
        pins[m.group(1).lower()] = m.group(2).replace(" ", "")
    return pins


def conda_pins(env: dict) -> dict[str, str]:
    """PyPI name -> specifier of an env's conda dependencies ('=' pins written as '==')."""
    pins = {}
    for dep in env["dependencies"]:
        if not isinstance(dep, str):
            continue  # the pip: sub-list
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dep.strip())
        name, spec = m.group(1).lower(), m.group(2).replace(" ", "")
        if re.fullmatch(r"=[^=].*", spec):
            spec = "=" + spec  # conda's exact `=x.y.z` is pip's `==x.y.z`
        pins[CONDA_TO_PYPI.get(name, name)] = spec
    return pins


def load_env(path: Path) -> dict:
    """An env file, checked to be a conda environment mapping."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), f"{path.name}: not a mapping"
    assert env.get("channels") and env.get("dependencies"), f"{path.name}: channels/dependencies"
    return env


def rule_blocks() -> dict[str, dict[str, str | None]]:
    """rule name -> {'conda': env path, 'script': script path, 'runs': bool} from the .smk files."""
    rules = {}
    for smk in sorted(RULES_DIR.glob("*.smk")) + [REPO / "Snakefile"]:
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE):
            body = m.group(2)

            def directive(name: str, body: str = body) -> str | None:
                d = re.search(rf"^\s+{name}:\s*\n\s+[\"']([^\"']+)[\"']", body, re.MULTILINE)
                return d.group(1) if d else None

            runs = bool(re.search(r"^\s+(script|shell|run|notebook|wrapper):", body, re.M))
            rules[m.group(1)] = {
                "conda": directive("conda"),
                "script": directive("script"),
                "runs": runs,
                "smk": smk,
            }
    return rules


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a script imports, following coaddbliss modules."""
    stdlib = set(sys.stdlib_module_names)
    seen_files: set[Path] = set()
    found: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen_files or not path.is_file():
            continue
        seen_files.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                # relative imports happen inside the (flat) coaddbliss package only
                parts = ["coaddbliss"] if node.level else []
                module = ".".join(parts + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "coaddbliss":
                    parts = name.split(".")[1:]
                    pkg = REPO / "src" / "coaddbliss"
                    todo.append(pkg / (parts[0] + ".py") if parts else pkg / "__init__.py")
                elif top not in stdlib and top != "__future__":
                    found.add(top)
    return found


@pytest.mark.parametrize("path", ENVS, ids=[p.stem for p in ENVS])
def test_env_pins_agree_with_pyproject(path):
    env = load_env(path)
    want = pyproject_pins()
    have = conda_pins(env)
    py = have.pop("python")
    assert py.startswith("==3.") and int(py.split(".")[1]) >= 11, f"{path.name}: python {py}"
    have.pop("pip", None)
    assert set(have) <= set(want), f"{path.name}: not pinned in pyproject: {set(have) - set(want)}"
    for name, spec in have.items():
        assert spec == want[name], f"{path.name}: {name}{spec}, pyproject: {name}{want[name]}"


@pytest.mark.parametrize("path", ENVS, ids=[p.stem for p in ENVS])
def test_env_has_no_relative_pip_paths(path):
    """Snakemake creates envs from a copy in .snakemake/conda/: `-e ../` would point there."""
    for dep in load_env(path)["dependencies"]:
        if isinstance(dep, dict):
            for item in dep.get("pip", []):
                assert not re.match(r"(-e\s+)?\.\.?/", str(item)), f"{path.name}: pip {item!r}"


def test_expected_envs_exist():
    assert {p.stem for p in ENVS} == {"sim", "torch", "analysis"}


def test_every_rule_that_runs_code_has_a_conda_env():
    rules = rule_blocks()
    assert "psf" in rules and "simulate_images" in rules  # the parser sees the workflow
    for name, rule in rules.items():
        if rule["runs"]:
            assert rule["conda"], f"rule {name} ({rule['smk'].name}) has no conda: directive"
            env = (rule["smk"].parent / rule["conda"]).resolve()
            assert env.parent == REPO / "envs" and env.is_file(), f"rule {name}: {rule['conda']}"


def test_each_rule_env_provides_what_its_script_imports():
    """A script run in its rule's env imports nothing that env lacks (transitively)."""
    pins = pyproject_pins()
    for name, rule in rule_blocks().items():
        if not (rule["script"] and rule["conda"]):
            continue
        script = (rule["smk"].parent / rule["script"]).resolve()
        env = load_env((rule["smk"].parent / rule["conda"]).resolve())
        have = set(conda_pins(env))
        need = {MODULE_TO_PYPI.get(m, m).lower() for m in third_party_imports(script)}
        need -= SNAKEMAKE_PROVIDED
        missing = need - have
        assert not missing, f"rule {name}: {rule['conda']} lacks {sorted(missing)}"
        assert need <= set(pins), f"rule {name}: imports unpinned {sorted(need - set(pins))}"


def test_parsers_on_known_cases():
    """The helpers above on hand-written inputs (so the tests above can fail)."""
    env = {"dependencies": ["python=3.11", "numpy=2.4.6", "pytorch>=2.4,<3", {"pip": ["x"]}]}
    assert conda_pins(env) == {"python": "==3.11", "numpy": "==2.4.6", "torch": ">=2.4,<3"}
    assert pyproject_pins()["torch"] == ">=2.4,<3"
