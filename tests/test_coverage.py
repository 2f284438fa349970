"""Functional coverage: hazard classification, the merge of several runs' exports, the summary table."""

from pathlib import Path

import yaml

from pimphony.model.isa import Opcode
from pimphony.verification.env.coverage import CROSSES, hazard_kind, merge, summary


def test_hazard_kinds_follow_the_buffer_access_table():
    o = Opcode
    cases = {(o.WR_INP, o.MAC, "gbuf"): "gbuf RAW", (o.MAC, o.WR_INP, "gbuf"): "gbuf WAR",
             (o.WR_INP, o.WR_INP, "gbuf"): "gbuf WAW", (o.MAC, o.MAC, "gbuf"): None,
             (o.WR_BIAS, o.MAC, "obuf"): "obuf RAW", (o.MAC, o.RD_OUT, "obuf"): "obuf RAW",
             (o.RD_OUT, o.WR_BIAS, "obuf"): "obuf WAR", (o.RD_OUT, o.MAC, "obuf"): "obuf WAR",
             (o.WR_BIAS, o.WR_BIAS, "obuf"): "obuf WAW", (o.MAC, o.WR_BIAS, "obuf"): "obuf WAW",
             (o.MAC, o.MAC, "obuf"): "obuf accumulate", (o.RD_OUT, o.RD_OUT, "obuf"): None}
    assert {k: hazard_kind(*k) for k in cases} == cases


def _export(path: Path, hits: dict[str, dict[str, int]]) -> Path:
    path.write_text(yaml.safe_dump({name: {"size": len(b), "bins:_hits": b} for name, b in hits.items()}
                                   | {"pimphony": {"size": 1, "coverage": 0}}))
    return path


def test_merge_sums_hits_and_summary_names_the_holes(tmp_path):
    a = _export(tmp_path / "a.yml", {"pimphony.dpa.response": {"('OPEN', 'OK')": 2, "('CLOSE', 'OK')": 0},
                                     "pimphony.hub.barrier": {"x": 0, "y": 1}})
    b = _export(tmp_path / "b.yml", {"pimphony.dpa.response": {"('OPEN', 'OK')": 1, "('CLOSE', 'OK')": 0}})
    merged = merge([a, b])
    assert merged == {"pimphony.dpa.response": {"('OPEN', 'OK')": 3, "('CLOSE', 'OK')": 0},
                      "pimphony.hub.barrier": {"x": 0, "y": 1}}
    table = summary(merged)
    assert "dpa.response                   1/2     50.0%  ('CLOSE', 'OK')" in table
    assert "hub.barrier                    1/2     50.0%  x" in table
    assert "dcs.issue                        -   not run" in table
    assert len(table.splitlines()) == 1 + len(CROSSES)
