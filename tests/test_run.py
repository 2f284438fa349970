"""The main job's plumbing (``pimphony run``): a small layer through a 4-channel hub on Icarus."""

import json

import pytest
import yaml

from pimphony.cli.main import main
from pimphony.rtl.build import cut_module
from pimphony.verification.runner import available


@pytest.mark.long(25)
def test_run_reports_correct_cycles_and_chunks(tmp_path, capsys):
    missing = available("icarus")
    if missing:
        pytest.skip(missing)
    model = tmp_path / "small.yaml"
    model.write_text("name: small\nvalues:\n  layers: 1\n  heads: 2\n  kv_heads: 1\n  head_dim: 64\n  context: 4096\n")
    module = tmp_path / "aimx-4ch.yaml"
    org = cut_module("aimx-16ch", 4)        # 4 channels (head_dim 64: one V slice) convert and simulate ~4x faster
    module.write_text(yaml.safe_dump({"name": org.name, "values": {k: getattr(org, k) for k in org.value_fields()}}))
    out = tmp_path / "run"
    code = main(["run", "--model", str(model), "--module", str(module), "--lengths", "70,33", "--sim", "icarus",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "correct against numpy: yes" in text and "speed-up" in text and "chunks used" in text
    assert "bit-exact against the golden model's in-order execution: yes (0 + 0 outputs differ)" in text
    report = json.loads((out / "report.json").read_text())
    assert report["dcs"]["cycles"] < report["static"]["cycles"]
    assert report["dcs"]["cycles"] < report["aim"]["cycles"] and "aim (aim_simulator's in-order AiM controller" in text
    assert report["chunks_used"] == 2 * 2 * 1          # K and V, one chunk each, per request and KV head
    assert report["static"]["error_ratio"] <= 1.0 and report["dcs"]["error_ratio"] <= 1.0


def test_progress_files_half_written_are_skipped(tmp_path):
    """The CLI polls the simulations' progress files while they write them: an empty or partial file is
    no progress yet, never an error."""
    from pimphony.cli.run import _progress

    assert _progress(tmp_path) is None
    for text in ("", "12", "12 ", "x 3", "3 4 5"):
        (tmp_path / "progress.txt").write_text(text)
        assert _progress(tmp_path) is None
    (tmp_path / "progress.txt").write_text("12 268\n")
    assert _progress(tmp_path) == (12, 268)
