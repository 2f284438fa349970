"""The paper's figures have one home, ``model/paper.yaml``: every figure in it is read by the package,
and the modules that compare with the paper take their figures from it."""

from pimphony.model.cache import ROOT
from pimphony.model.paper import PAPER


def test_every_figure_of_the_file_is_read():
    code = "\n".join(p.read_text() for folder in ("model", "scheduler", "experiments", "scripts")
                     for p in (ROOT / folder).rglob("*.py"))
    unread = [key for key in PAPER if f'"{key}"' not in code and f"'{key}'" not in code]
    assert not unread, f"paper.yaml figures nobody reads: {unread}"


def test_no_module_keeps_a_copy_of_the_papers_figures():
    """No package module defines its own table of paper figures (a ``*PAPER*`` name bound to a dict or
    number literal): they read ``PAPER``."""
    import ast

    copies = []
    for folder in ("model", "scheduler", "experiments", "scripts", "rtl", "verification"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict | ast.Constant | ast.Tuple):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name) and "PAPER" in t.id]
                    copies += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names]
    assert not copies, copies
