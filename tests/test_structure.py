"""The package's module boundaries: no import cycles, no reaching into another package's
private modules, and light imports where a user only wants light things.

The import graph is read from the source with :mod:`ast` (every ``import``, at module top or
inside a function), so a cycle hidden behind a function-local import still counts.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rtml"


def module_name(path: Path) -> str:
    """Dotted name of a source file relative to the project root (``rtml.tddft._fock``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def rtml_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_names(path: Path) -> list[str]:
    """Every dotted name an import statement in ``path`` reaches (``from a import b`` gives
    ``a`` and ``a.b``; relative imports are resolved)."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.append(target)
            names += [f"{target}.{alias.name}" for alias in node.names]
    return names


def resolve_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is an rtml module or package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def unit_of(module: str, modules: dict[str, Path]) -> str:
    """The subpackage a module belongs to; a top-level module (``rtml.fields``) is its own."""
    parts = module.split(".")
    for k in range(len(parts), 1, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules and modules[candidate].name == "__init__.py":
            return candidate
    return module


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph as a node list (first == last), or None (DFS colouring)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def import_graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(subpackage graph, module graph) of rtml.

    Subpackage edges come from any import between two units. A package front
    (``__init__``) importing its own subpackage is re-export, not dependence; any other
    module of a parent importing its child (or the child importing the parent) counts both
    ways. Module edges come from imports that name a module file other than a package front.
    """
    modules = rtml_modules()
    units: dict[str, set[str]] = {}
    mods: dict[str, set[str]] = {}
    for name, path in modules.items():
        src_unit = unit_of(name, modules)
        for target in imported_names(path):
            if not target.startswith("rtml"):
                continue
            resolved = resolve_module(target, modules)
            if resolved is None:
                continue
            dst_unit = unit_of(resolved, modules)
            nested = dst_unit.startswith(src_unit + ".") or src_unit.startswith(dst_unit + ".")
            if dst_unit != src_unit and not (nested and path.name == "__init__.py"):
                units.setdefault(src_unit, set()).add(dst_unit)
            if (resolved != name and path.name != "__init__.py"
                    and modules[resolved].name != "__init__.py"):
                mods.setdefault(name, set()).add(resolved)
    return units, mods


def test_find_cycle_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_subpackages():
    units, _ = import_graphs()
    assert "rtml.tddft" in units and "rtml.cli" in units  # the graph was really read
    assert find_cycle(units) is None, f"subpackage import cycle: {' -> '.join(find_cycle(units))}"


def test_no_import_cycle_between_modules():
    _, mods = import_graphs()
    assert find_cycle(mods) is None, f"module import cycle: {' -> '.join(find_cycle(mods))}"


def test_chem_does_not_import_tddft():
    units, _ = import_graphs()
    assert "rtml.tddft" not in units.get("rtml.chem", set())


_PRIVATE = re.compile(r"^(rtml(?:\.[a-z0-9]\w*)*)\.(_[a-z0-9]\w*)")
_SMK_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ]+)|import\s+([\w.]+))", re.M)


def private_owner(name: str) -> str | None:
    """``rtml.tddft._engine.x`` -> ``rtml.tddft`` (the package owning the private module)."""
    match = _PRIVATE.match(name)
    return match.group(1) if match else None


def files_outside_package():
    for folder in ("tests", "benchmarks", "workflow"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield from sorted(PACKAGE.rglob("*.py"))


def test_private_owner():
    assert private_owner("rtml.tddft._engine.to_orthonormal") == "rtml.tddft"
    assert private_owner("rtml._errors") == "rtml"
    assert private_owner("rtml.tddft.nwchem._run") == "rtml.tddft.nwchem"
    assert private_owner("rtml.tddft.absorption_spectrum") is None
    assert private_owner("rtml.__version__") is None


def test_no_import_of_another_packages_private_module():
    offenders = []
    for path in files_outside_package():
        importer = module_name(path)
        for target in imported_names(path):
            owner = private_owner(target)
            if owner is not None and importer != owner and not importer.startswith(owner + "."):
                offenders.append(f"{path.relative_to(ROOT)}: {target}")
    smk_files = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]
    for path in smk_files:
        for m in _SMK_IMPORT.finditer(path.read_text()):
            names = [m.group(3)] if m.group(3) else [f"{m.group(1)}.{n.strip()}" for n in m.group(2).split(",")]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if private_owner(n)]
    assert not offenders, "imports of private modules from outside their package:\n" + "\n".join(offenders)


@pytest.mark.parametrize("statement", [
    "from rtml.tddft import absorption_spectrum, find_peaks",
    "import rtml.data",
    "import rtml.fields",
])
def test_light_imports_do_not_load_pyscf_or_torch(statement):
    code = f"import sys; {statement}; print(sorted({{'pyscf', 'torch'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{statement!r} imported {out.stdout.strip()}"
