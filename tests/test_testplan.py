"""The testplan: every testpoint has a test, and every test it names exists."""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "verification" / "testplan.yaml"


def defined_names(path: Path, cocotb: bool = False) -> set[str]:
    """Top-level test functions and classes of a module (for cocotb: functions decorated @cocotb.test)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            decorated = any(ast.unparse(d).startswith("cocotb.test") for d in node.decorator_list)
            if decorated or not cocotb:
                names.add(node.name)
        elif isinstance(node, ast.ClassDef) and not cocotb:
            names.add(node.name)
        elif isinstance(node, ast.Assign) and not cocotb:
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_testpoint_has_an_existing_test():
    plan = yaml.safe_load(PLAN.read_text())["testpoints"]
    assert plan, "the testplan is empty"
    problems = []
    for point, entry in plan.items():
        tests = entry.get("tests") or []
        if not tests:
            problems.append(f"{point}: no test")
        if not entry.get("what"):
            problems.append(f"{point}: no description")
        for ref in tests:
            if ref.startswith("cocotb:"):
                _, module, name = ref.split(":")
                path = ROOT / "verification" / "tests" / f"{module}.py"
                ok = path.is_file() and name in defined_names(path, cocotb=True)
            else:
                file, name = ref.split("::")
                path = ROOT / file
                ok = path.is_file() and name.startswith(("test_", "Test")) and name in defined_names(path)
            if not ok:
                problems.append(f"{point}: {ref} does not exist")
    assert not problems, "\n".join(problems)


def test_every_cocotb_test_is_in_the_plan():
    plan = yaml.safe_load(PLAN.read_text())["testpoints"]
    named = {ref for entry in plan.values() for ref in entry["tests"] if ref.startswith("cocotb:")}
    for module in (ROOT / "verification" / "tests").glob("tb_*.py"):
        for name in defined_names(module, cocotb=True):
            assert f"cocotb:{module.stem}:{name}" in named, f"cocotb test {module.stem}.{name} covers no testpoint"
