"""The library files a Python file imports, directly or not: read from the import statements.

One walker for two users: the workflow's code inputs (workflow/rules/common.smk: editing a file
reruns exactly the rules whose scripts import it) and training's resume fingerprint
(coaddbliss.train: a resume state from other code is not resumed). Reading the files, not
sys.modules, gives the same answer in every process whatever else it imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "coaddbliss"


def _module_file(package_dir: Path, parts: tuple[str, ...]) -> Path | None:
    """The file of module `parts` (('coaddbliss', 'x') -> PACKAGE_DIR/x.py), or None."""
    base = package_dir.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path, package: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Parts of every module a file imports, lazy imports too; relative ones from `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [tuple(a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level and not package:
                continue  # a relative import outside the package: not the library
            base = package[: len(package) - node.level + 1] if node.level else ()
            target = base + tuple(node.module.split(".") if node.module else ())
            # `from m import name`: name may be a submodule of m, or just an attribute
            found += [target] + [target + (a.name,) for a in node.names]
    return found


def imported_files(path: Path, package_dir: Path, package: tuple[str, ...] = ()) -> set[Path]:
    """Every file of the library in `package_dir` (the coaddbliss folder) that `path` imports,
    directly or not (`path` itself only if imported back). `package`: the package `path` is in,
    for its relative imports.
    """
    todo, seen = [(Path(path), tuple(package))], set()
    while todo:
        file, pkg = todo.pop()
        for parts in _imported_modules(file, pkg):
            if parts[:1] != (PACKAGE,):
                continue
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            for n in range(1, len(parts) + 1):
                found = _module_file(package_dir, parts[:n])
                if found is not None and found not in seen:
                    seen.add(found)
                    is_package = found.name == "__init__.py"
                    todo.append((found, parts[:n] if is_package else parts[: n - 1]))
    return seen
