"""The package's layers import one way (docs/how-it-works.md, "Module map").

- ``_core``, the numeric core on arrays, imports nothing else of the package;
- ``_history``, reading and matching prior studies, imports the core and the vocabulary;
- ``_dashboard`` reads only the sampler's public objects, the vocabulary and the public
  Pareto helpers, never the core or the histories;
- the benchmarks and the examples import only public names.

Every import counts, also those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "optuna_metabo"
ALLOWED = {
    "_core": ("_core",),
    "_history": ("_core", "_history", "_vocabulary"),
    "_dashboard": ("_dashboard", "_sampler", "_last_proposal", "_vocabulary", "pareto"),
}


def imported_modules(source: str, module: str) -> set[str]:
    """The ``optuna_metabo`` modules that ``source`` (the module ``module``) imports.

    Args:
        source: Python source.
        module: Its dotted name, to resolve relative imports.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _layer_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(sources: dict[str, str]) -> list[str]:
    """Imports that break the layering, as ``"importer -> imported"``.

    Args:
        sources: Module name -> source, for the package's modules, the benchmarks' and the
            examples'.
    """
    found = []
    for module, source in sources.items():
        for imported in sorted(imported_modules(source, module)):
            layer = _layer_of(imported)
            if module == PACKAGE or module.startswith(PACKAGE + "."):
                allowed = ALLOWED.get(_layer_of(module))
                if allowed is not None and layer and layer not in allowed:
                    found.append(f"{module} -> {imported}")
            elif any(part.startswith("_") for part in imported.split(".")[1:]):
                found.append(f"{module} -> {imported}")  # a private name, outside the package
    return found


def _sources() -> dict[str, str]:
    sources = {}
    for folder in (PACKAGE, "benchmarks", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            sources[dotted.removesuffix(".__init__")] = path.read_text()
    return sources


def test_the_layers_import_one_way() -> None:
    sources = _sources()
    assert {"optuna_metabo._core.proposal", "benchmarks.runner"} <= set(sources)
    assert violations(sources) == []


@pytest.mark.parametrize(
    "module, source",
    [
        ("optuna_metabo._core.proposal", "from optuna_metabo._vocabulary import SOURCES"),
        ("optuna_metabo._core.model", "def f():\n    import optuna_metabo._history.priors"),
        ("optuna_metabo._dashboard.plots", "from optuna_metabo._core import search_space"),
        ("optuna_metabo._dashboard.plots", "from .._history.outputs import x"),
        ("benchmarks.runner", "from optuna_metabo._core.types import EngineSettings"),
    ],
)
def test_an_import_against_the_layers_is_reported(module: str, source: str) -> None:
    assert violations({module: source}) != []


def test_allowed_imports_are_not_reported() -> None:
    assert (
        violations(
            {
                "optuna_metabo._core.proposal": "from optuna_metabo._core.model import fit_icm_gp",
                "optuna_metabo._dashboard.plots": "from optuna_metabo._last_proposal import X",
                "benchmarks.runner": "from optuna_metabo import EngineSettings",
                "optuna_metabo._sampler": "from optuna_metabo._core.types import EngineSettings",
            }
        )
        == []
    )
