"""The package's layers, as docs/design.md §layers draws them: a module imports only its own layer and
the layers below it. The test walks every import statement (function-level ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pimphony.model.cache import ROOT

LAYERS = {"model": "model", "scheduler": "scheduler", "rtl": "rtl", "verification": "verification",
          "experiments": "experiments", "cli": "scripts"}
"""Package name -> the folder that holds it."""
ALLOWED = {
    "model": set(),
    "scheduler": {"model"},
    "rtl": {"model"},
    "verification": {"model", "scheduler", "rtl"},
    "experiments": {"model", "scheduler", "rtl", "verification"},
    "cli": {"model", "scheduler", "rtl", "verification", "experiments"},
}


def _module(package: str, path: Path) -> list[str]:
    """The dotted name of the module at ``path`` in ``package``, split."""
    parts = ["pimphony", package, *path.relative_to(ROOT / LAYERS[package]).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(source: str, module: list[str], is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported pimphony layer) of every import in ``source`` (the text of ``module``), relative
    imports resolved."""
    here = module if is_package else module[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) + 1 - node.level] if node.level else []
            names = [".".join([*base, *([node.module] if node.module else [])])]
        else:
            continue
        for name in names:
            bits = name.split(".")
            if bits[0] == "pimphony" and len(bits) > 1:
                found.append((node.lineno, bits[1]))
    return found


def _sources():
    for package, folder in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize(("package", "path"), list(_sources()),
                         ids=lambda x: str(x.relative_to(ROOT)) if isinstance(x, Path) else x)
def test_imports_point_down(package, path):
    found = _imports(path.read_text(), _module(package, path), path.name == "__init__.py")
    wrong = [f"{path.relative_to(ROOT)}:{line} imports pimphony.{layer}" for line, layer in found
             if layer != package and layer not in ALLOWED[package]]
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing above itself'}: {wrong}"


def test_the_walk_sees_relative_and_nested_imports():
    """The checker itself: relative imports resolved from a module and from a package, and an import
    inside a function, are found."""
    source = "from . import isa\ndef f():\n    from ...scheduler import lower\n    import pimphony.rtl.dcs\n"
    assert [layer for _, layer in _imports(source, ["pimphony", "model", "perf", "hub"])] == \
        ["model", "scheduler", "rtl"]
    assert [layer for _, layer in _imports("from ..rtl import dcs", ["pimphony", "model"], True)] == ["rtl"]
