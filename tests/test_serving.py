"""The serving simulator: invariants over random traces, trace files, the CLI."""

import json
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimphony.cli.main import main
from pimphony.experiments.points import PointSpec, build_point
from pimphony.model.config import InputError
from pimphony.model.kvcache import ChunkLayout, Status, segments_of
from pimphony.model.perf.serving import ServeRequest, read_trace, serve
from pimphony.model.perf.system import weight_bytes
from pimphony.scheduler.costs import kernel_costs


def _point(alloc: str, capacity: str = "32GB"):
    point = build_point(PointSpec(model="llama-3.1-8b", system="cent", capacity=capacity, workload="qmsum",
                                  alloc=alloc, t_max=16384))
    return point, kernel_costs(point.org, point.timing, 128, 4)


requests_st = st.lists(st.tuples(st.floats(0, 20), st.integers(1, 14000), st.integers(1, 1500)), min_size=1,
                       max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st, alloc=st.sampled_from(["dpa", "static"]), preempt=st.sampled_from(["recompute", "swap"]))
def test_serving_invariants(raw, alloc, preempt):
    """Every arrived request completes, is rejected or is reported unfinished; every token is generated once
    (a preempted request resumes from its count); no chunk is leaked or held twice after any step (checked
    by the allocator every step); static never holds more requests than its reservations allow."""
    point, costs = _point(alloc)
    reqs = [ServeRequest(i, t, p, o) for i, (t, p, o) in enumerate(sorted(raw))]
    res = serve(point, costs, reqs, duration_s=30.0, preempt=preempt, prefill=False, log=True, check=True)
    assert res.arrived == len(reqs) == res.finished + res.rejected + res.unfinished
    appended = Counter(rid for op, rid, _, status, _ in res.log if op == "append" and status == Status.OK)
    assert sum(appended.values()) == res.tokens == len(res.token_latency_s)
    done = set()
    for op, rid, _, _, _ in res.log:
        if op == "close" and appended[rid] == reqs[rid].output:
            done.add(rid)
    assert len(done) == res.finished
    assert all(appended[r] <= reqs[r].output for r in appended)
    if alloc == "static":
        assert res.preemptions == 0
        held, peak = 0, 0
        for op, _, _, status, _ in res.log:
            held += (op == "open" and status == Status.OK) - (op == "close")
            peak = max(peak, held)
        layout = ChunkLayout(point.org, 128, point.chunk_bytes)
        per_request = sum(layout.segment_chunks(point.t_max)) * segments_of(point.model)
        pool = (res.deployment[0] * point.org.bytes - weight_bytes(point.model, point.org)) // point.chunk_bytes
        assert peak * per_request <= pool
    else:
        opened_again = Counter(rid for op, rid, _, status, _ in res.log if op == "open" and status == Status.OK)
        assert sum(n - 1 for n in opened_again.values()) <= res.preemptions


def test_dpa_preempts_under_pressure_and_recompute_and_swap_both_finish():
    point, costs = _point("dpa")
    reqs = [ServeRequest(i, 0.01 * i, 12000, 600) for i in range(16)]
    out = {p: serve(point, costs, reqs, duration_s=600.0, preempt=p, prefill=True, log=True, check=True)
           for p in ("recompute", "swap")}
    for res in out.values():
        assert res.preemptions > 0 and res.finished == len(reqs) and res.tokens == 16 * 600
    assert out["recompute"].preempted_tokens > 0 and out["swap"].preempted_tokens > 0


def test_trace_file_round_trip_and_errors(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.0,2000,3\n")
    reqs = read_trace(good)
    assert [(r.arrival_s, r.prompt, r.output) for r in reqs] == [(0.0, 2000, 3), (0.5, 100, 10)]
    bad = tmp_path / "b.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,-1,10\n")
    with pytest.raises(InputError, match=r"b.csv: line 2: want arrival_s >= 0, prompt_tokens >= 1"):
        read_trace(bad)
    bad.write_text("t,p,o\n")
    with pytest.raises(InputError, match="the first line must be the header arrival_s,prompt_tokens,output_tokens"):
        read_trace(bad)


def test_serve_cli(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{0.1 * i},{3000 + 7 * i},50\n"
                                                                         for i in range(20)))
    assert main(["serve", "--model", "llama-3.1-8b", "--trace", str(trace), "--duration", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "20 arrived, 20 finished" in out and "per-token latency" in out
    assert main(["serve", "--model", "llama-3.1-8b", "--workload", "qmsum", "--clients", "4", "--duration", "20",
                 "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["clients"] == 4 and data["output_tokens"] > 0 and data["token_latency_p99_ms"] > 0
    assert main(["serve", "--model", "llama-3.1-8b", "--duration", "10"]) == 2
    assert "give the load: --rate R, --clients N or --trace FILE" in capsys.readouterr().err
    assert main(["serve", "--model", "llama-3.1-8b", "--rate", "-1"]) == 2
    assert "--rate must be a positive number of requests per second; got -1.0" in capsys.readouterr().err
    assert main(["serve", "--model", "llama-3.1-8b", "--trace", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: cannot read" in capsys.readouterr().err


TINY = ("name: tiny-serving\ndescription: two layers, two KV heads (4 DPA segments)\nvalues: {layers: 2, heads: 8, "
        "kv_heads: 2, head_dim: 128, context: 131072, hidden: 1024, intermediate: 2048, vocab: 1000}\n")


@pytest.mark.long(20)
def test_serving_trace_replays_through_the_dpa_rtl(tmp_path):
    """A serving run with preemptions (>= 200 decode steps) on a DPA controller sized like a scaled-down
    module: every OPEN / APPEND / CLOSE, and a TRANSLATE of every chunk it mapped, gets the same response from
    the RTL (amaranth.sim) as from the golden controller, and the same status and free count as the run
    logged. A corrupted log is caught."""
    from pimphony.model.dpa import DpaConfig, DpaControllerModel
    from pimphony.verification.serving import compare, operations, replay

    model = tmp_path / "tiny.yaml"
    model.write_text(TINY)
    point = build_point(PointSpec(model=str(model), system="cent", capacity="16GB", workload="qmsum", alloc="dpa"))
    costs = kernel_costs(point.org, point.timing, 128, 4)
    config = DpaConfig(point.org, 128, max_requests=8, segments=4, max_chunks_per_segment=4, chunks=32)
    reqs = [ServeRequest(i, 1e-6 * i, 3900 + 53 * i, 150 + 13 * i) for i in range(8)]     # they cross a chunk
    res = serve(point, costs, reqs, duration_s=30.0, log=True, dpa=config, prefill=False, check=True)
    assert res.steps >= 200 and res.preemptions >= 50 and res.finished == len(reqs)
    result = replay(res.log, config)
    print(f"{result.operations} operations ({result.translations} TRANSLATE), {result.cycles} cycles")
    assert result.translations > 0 and result.mismatches == []
    ops = operations(res.log, config)
    golden = DpaControllerModel(config)
    expected = [golden.step(o)[0] for o in ops]
    op, rid, tokens, status, free = res.log[3]
    bad = [*res.log[:3], (op, rid, tokens, status, free + 1), *res.log[4:]]
    assert len(compare(bad, ops, expected, result.responses)) == 1
    wrong_chunk = next(i for i, o in enumerate(ops) if o.op.name == "TRANSLATE")
    rtl = list(result.responses)
    rtl[wrong_chunk] = replace(rtl[wrong_chunk], chunk=rtl[wrong_chunk].chunk + 1)
    assert len(compare(res.log, ops, expected, rtl)) == 1


def test_reproduce_serving_writes_table_and_plot(tmp_path, capsys):
    assert main(["reproduce", "serving", "--out", str(tmp_path), "--duration", "5", "--rates", "1,4",
                 "--jobs", "2"]) == 0
    text = (tmp_path / "serving.md").read_text()
    assert "| TCP | dpa |" in text and "| HFP | static |" in text and "saturates at" in text
    assert "## cent" in text and "## neupims" in text
    assert "Where TCP + static saturates" in text and "| swap |" in text and "| recompute |" in text
    assert (tmp_path / "serving.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["reproduce", "serving", "--out", str(tmp_path), "--duration", "0"]) == 2
    assert "--duration must be a positive number of seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "serving", "--rates", "1,x"])
    assert exit_.value.code == 2
    assert "want positive requests per second separated by commas" in capsys.readouterr().err
