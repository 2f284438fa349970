"""``pimphony sweep`` (local processes, a Dask cluster, the result cache) and ``pimphony reproduce``."""

import pandas as pd
import pytest

from pimphony.cli.main import main
from pimphony.experiments import sweep as S

SPEC = """\
base: {system: cent, capacity: 128GB, workload: multifieldqa, schedule: aim, alloc: static}
grid:
  model: [llama-3.1-8b, llama-3.1-70b]
  partition: [hfp, tcp]
  seed: [0, 1]
"""



def test_spec_grid_order_and_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    points = S.load_spec(path)
    assert len(points) == 8 and points[0].partition == "hfp" and points[1].seed == 1
    assert points[-1].model == "llama-3.1-70b"
    for text, message in (("grid: {colour: [red]}", r"grid.colour: unknown field; allowed: alloc, capacity"),
                          ("grid: {model: qwen1.5-7b}", r"grid.model: must be a non-empty list"),
                          ("base: {model: qwen1.5-7b}", r"no point of the grid is valid; the first: give exactly one of"),
                          ("grid: [", r"broken YAML")):
        path.write_text(text)
        with pytest.raises(S.SweepError, match=message):
            S.load_spec(path)


def test_sweep_csv_then_cached_parquet(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "t.csv"
    assert main(["sweep", str(spec), "--out", str(out), "--jobs", "2"]) == 0
    assert "8 points on 2 local process(es)" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert len(table) == 8
    bad = table[table["model"] == "llama-3.1-70b"]
    assert bad["error"].str.contains("do not fit in 8 x cent-32ch").all()     # a failed point is a row
    good = table[table["model"] == "llama-3.1-8b"]
    assert (good["tokens_per_s"] > 0).all() and good["error"].isna().all()
    tcp = good[good["partition"] == "tcp"]["tokens_per_s"].to_numpy()
    hfp = good[good["partition"] == "hfp"]["tokens_per_s"].to_numpy()
    assert (tcp > hfp).all()
    # a repeated sweep reads the cache: nothing is evaluated again
    monkeypatch.setattr(S, "run_point", lambda spec: pytest.fail("a cached point was evaluated again"))
    parquet = tmp_path / "t.parquet"
    assert main(["sweep", str(spec), "--out", str(parquet), "--jobs", "1"]) == 0
    again = pd.read_parquet(parquet)
    assert again["tokens_per_s"].fillna(-1).tolist() == table["tokens_per_s"].fillna(-1).tolist()


def test_sweep_on_a_dask_cluster_matches_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    points = S.load_spec(spec)[:4]
    local = S.run_sweep(points, jobs=1, use_cache=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        remote = S.run_sweep(points, scheduler=c.scheduler_address, use_cache=False)
    assert [r["tokens_per_s"] for r in remote] == [r["tokens_per_s"] for r in local]


def test_sweep_cli_errors(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: cannot read" in capsys.readouterr().err
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "t.xlsx")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err


@pytest.mark.long(20)
def test_reproduce_writes_every_target(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path), "--trials", "1"]) == 0
    text = (tmp_path / "reproduction.md").read_text()
    for target in ("R1", "R2", "R3", "R5", "R6", "R7", "R8", "R10", "R11", "R12", "R13", "R14", "R17", "R18",
                   "R15", "R16", "R19", "R20", "R23", "R24"):
        assert f"| {target} |" in text
    assert "| paper | pimphony | ratio |" in text and "## Assumptions" in text and "| R19' |" in text
    assert "| cent | softmax_per_ns | public-model | 9.309 |" in text                  # sensitivity
    assert "| neupims | link_gbps | assumed | 64 |" in text
    assert "| R1 | 11.30x | " in text and "Within 25% of the paper:" in text        # the key-span table
    for png in ("reproduction_fig13.png", "reproduction_fig14.png", "reproduction_fig17.png",
                "reproduction_fig19.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
