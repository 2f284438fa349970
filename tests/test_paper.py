"""The paper's figures have one home, ``model/paper.yaml``: every figure in it is read by the package,
and the modules that compare with the paper take their figures from it."""

from pimphony.model.cache import ROOT
from pimphony.model.paper import PAPER
from pimphony.model.perf import capacity
from pimphony.scheduler import dcs_experiments


def test_every_figure_of_the_file_is_read():
    code = "\n".join(p.read_text() for folder in ("model", "scheduler", "experiments", "scripts")
                     for p in (ROOT / folder).rglob("*.py"))
    unread = [key for key in PAPER if f'"{key}"' not in code and f"'{key}'" not in code]
    assert not unread, f"paper.yaml figures nobody reads: {unread}"


def test_comparisons_take_the_files_figures():
    assert PAPER["fig19"] == capacity.PAPER
    assert dcs_experiments.PAPER["table_bytes"] == PAPER["table_bytes"]
    assert dcs_experiments.PAPER["fig7_static"] == PAPER["fig7"]["static_cycles"]
    assert set(PAPER["gains"]) == {"R1", "R2", "R14", "R16", "R19"}
