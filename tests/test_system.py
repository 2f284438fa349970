"""The system performance model: kernel costs from the cycle model, admission, invariants, CLI, sweep."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.cli.main import main
from pimphony.experiments.points import PointSpec, build_point, parse_size, run_point
from pimphony.model.config import ConfigError, ModelConfig, ModuleOrg, TimingPreset, WorkloadConfig
from pimphony.model.perf.capacity import admit, capacity_run
from pimphony.model.perf.system import (
    BASELINE,
    KernelCosts,
    PerfError,
    Techniques,
    channel_cycles,
    evaluate,
    parallel_plans,
)
from pimphony.model.queue import Policy
from pimphony.scheduler import costs as C

CENT = ModuleOrg.load("cent-32ch")
AIM = TimingPreset.load("aim-gddr6")


@pytest.fixture(scope="module")
def gqa4_costs():
    return C.measure(CENT, AIM, 128, 4)


def test_attention_cost_between_and_beyond_the_grid(gqa4_costs):
    """Interpolated between grid points and extrapolated past the last, the curves stay within 2% of the
    cycle model."""
    for partition, policy, length in (("tcp", Policy.DCS, 40000), ("hfp-1", Policy.STATIC, 40000),
                                      ("hfp-1", Policy.DCS, 131072), ("hfp-4", Policy.DCS, 100000),
                                      ("hfp-8", Policy.STATIC, 300000), ("tcp", Policy.STATIC, 400000)):
        qk, sv = C.attention_profiles(CENT, AIM, partition, 128, 4, length)[policy.name.lower()][:2]
        pqk, psv = gqa4_costs.attention[(partition, policy.name.lower())](np.array([length]))
        assert pqk[0] == pytest.approx(qk, rel=0.02) and psv[0] == pytest.approx(sv, rel=0.02)


def test_costs_order_the_techniques(gqa4_costs):
    """DCS is cheaper than static per token; TCP's busiest channel does a fraction of HFP's."""
    length = np.array([65536])
    hfp = sum(x[0] for x in gqa4_costs.attention[("hfp-1", "static")](length))
    tcp = sum(x[0] for x in gqa4_costs.attention[("tcp", "static")](length))
    dcs = sum(x[0] for x in gqa4_costs.attention[("tcp", "dcs")](length))
    assert dcs < tcp < hfp / 8
    assert gqa4_costs.gemv_cycles_per_byte["dcs"] <= gqa4_costs.gemv_cycles_per_byte["static"]
    aim_tcp = sum(x[0] for x in gqa4_costs.attention[("tcp", "aim")](length))
    assert dcs < aim_tcp / 2 and gqa4_costs.gemv_cycles_per_byte["dcs"] < gqa4_costs.gemv_cycles_per_byte["aim"]


def test_kernel_costs_cache_round_trip(monkeypatch, gqa4_costs):
    assert KernelCosts.from_json(json.loads(json.dumps(gqa4_costs.to_json()))) == gqa4_costs
    first = C.kernel_costs(CENT, AIM, 128, 4)
    monkeypatch.setattr(C, "measure", lambda *a: pytest.fail("a cached measurement was taken again"))
    assert C.kernel_costs(CENT, AIM, 128, 4) == first


@pytest.mark.parametrize(("model", "workload", "policy"), [
    ("qwen1.5-7b", "qmsum", "static"), ("qwen1.5-7b", "qmsum", "dpa"),
    ("llama-3.1-8b", "loogle-sd", "dpa"), ("llama-3.1-70b", "multifieldqa", "dpa")])
def test_admit_is_the_allocator_run(model, workload, policy):
    """The closed-form admission equals playing the batch through the golden allocators."""
    m, wl = ModelConfig.load(model), WorkloadConfig.load(workload)
    for seed in (0, 5):
        fast = admit(m, CENT, wl, 200 << 30, policy, seed, generate=64)
        slow = capacity_run(m, CENT, wl, 200 << 30, policy, seed, generate=64)
        assert (fast.batch, fast.chunks_used, fast.utilisation) == (slow.batch, slow.chunks_used, slow.utilisation)
        assert fast.utilisation == pytest.approx(slow.utilisation, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["qwen1.5-7b", "llama-3.1-8b", "llama-3.1-70b"]),
       workload=st.sampled_from(["qmsum", "musique", "multifieldqa", "loogle-sd"]),
       kv_gb=st.integers(1, 2000), seed=st.integers(0, 1000), generate=st.integers(1, 1024))
def test_dpa_never_fits_a_smaller_batch_than_static(model, workload, kv_gb, seed, generate):
    m, wl = ModelConfig.load(model), WorkloadConfig.load(workload)
    static = admit(m, CENT, wl, kv_gb << 30, "static", seed, generate)
    dpa = admit(m, CENT, wl, kv_gb << 30, "dpa", seed, generate)
    assert dpa.batch >= static.batch


@pytest.mark.parametrize("techniques", [BASELINE, Techniques()])
@pytest.mark.parametrize(("model", "workload", "system"), [
    ("llama-3.1-8b", "multifieldqa", "cent"), ("qwen1.5-7b", "qmsum", "neupims"),
    ("llama-3.1-70b", "loogle-sd", "cent"), ("qwen1.5-7b", "multifieldqa", "neupims")])
def test_more_capacity_never_lowers_throughput(model, workload, system, techniques):
    """Also where more modules would force a deeper pipeline than the batch fills (qwen1.5-7b on 6
    NeuPIMs modules: TP must divide 32 KV heads, so all 6 would mean PP 3 or 6): the deployment search
    may leave modules idle."""
    tps = []
    for gb in (128, 192, 256, 384, 512, 768, 1024):
        spec = PointSpec(model=model, system=system, capacity=f"{gb}GB", workload=workload,
                         partition=techniques.partition, schedule=techniques.schedule, alloc=techniques.alloc)
        try:
            tps.append(run_point(spec).tokens_per_s)
        except PerfError:
            assert not tps, f"{gb} GB does not fit although a smaller capacity did"     # 72B: weights > 128 GB
    assert len(tps) >= 6 and tps == sorted(tps), tps


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(257, 200_000), min_size=1, max_size=40), heads=st.sampled_from([1, 2, 4, 8]),
       org=st.sampled_from(["aimx-16ch", "cent-32ch"]))
def test_tcp_never_leaves_a_channel_idle_where_hfp_had_it_busy(gqa4_costs, lengths, heads, org):
    """Above the full-activation length (R10: every bank holds a key) TCP keeps every channel busy.
    (Below it — a few hundred tokens — TCP deals every pair from channel 0, so many short pairs can
    leave channels idle that HFP would have used; the system model charges that as it is.)"""
    o = ModuleOrg.load(org)
    x = np.array(lengths, dtype=np.float64)
    if x.min() <= o.lanes:
        x = x + o.lanes
    tcp = channel_cycles("tcp", gqa4_costs.attention[("tcp", "static")], x, heads, o.channels, o.banks, 8)
    assert (tcp > 0).all()
    for hfp_kind in ("hfp-1", "hfp-2", "hfp-4", "hfp-8"):
        hfp = channel_cycles(hfp_kind, gqa4_costs.attention[(hfp_kind, "static")], x, heads, o.channels, o.banks, 8)
        assert ((tcp > 0) | (hfp == 0)).all()
        assert (hfp == 0).any() == (len(lengths) * heads < o.channels // 8)     # fewer pairs than V slices


def test_hfp_busy_channels_follow_the_partition(gqa4_costs):
    """The system model's busy channels are the partition's: 3 pairs of 300 tokens on a 16-channel module,
    for every layout the system model charges."""
    from pimphony.model.perf.system import LAYOUTS
    from pimphony.scheduler.partition import make_partition

    org = ModuleOrg.load("aimx-16ch")
    for kind in LAYOUTS:
        part = make_partition(kind, org, 128)
        used = set()
        for p in part.place(np.array([300, 300, 300]), 1):
            t = np.arange(p.length)
            used |= set(part.locate_k(p, t)["channel"].tolist())
            used |= set(part.locate_v(p, np.repeat(t, 128), np.tile(np.arange(128), p.length))["channel"].tolist())
        load = channel_cycles(kind, gqa4_costs.attention[(kind, "static")], np.array([300.0] * 3), 1, 16, 16, 8)
        assert set(np.nonzero(load)[0].tolist()) == used, kind


def test_step_parts_add_up_and_plans_obey_the_rules():
    result = run_point(PointSpec(model="llama-3.1-70b", system="cent", capacity="512GB", workload="loogle-sd"))
    best = result.best
    assert sum(best.parts_ns.values()) == pytest.approx(best.step_ns, rel=1e-9)
    assert best.tokens_per_s == pytest.approx(result.admission.batch / best.step_ns * 1e9)
    assert best.tokens_per_s == max(p.tokens_per_s for p in result.plans)
    for p in result.plans:
        assert p.tp * p.pp == p.modules <= 32 and 8 % p.tp == 0
        assert p.admission.batch >= 1
    assert parallel_plans(ModelConfig.load("qwen1.5-72b"), 32) == [(1, 32), (2, 16), (4, 8), (8, 4), (16, 2),
                                                                   (32, 1)]
    assert 0 < best.mac_utilisation < 1


def test_pimphony_beats_the_baseline_on_long_contexts():
    """The paper's ordering on a GQA-128K workload: each technique adds throughput."""
    spec = PointSpec(model="llama-3.1-8b", system="cent", capacity="128GB", workload="multifieldqa")
    order = [run_point(PointSpec(**{**spec.__dict__, "partition": p, "schedule": s, "alloc": a})).tokens_per_s
             for p, s, a in (("hfp", "aim", "static"), ("tcp", "aim", "static"), ("tcp", "dcs", "static"),
                             ("tcp", "dcs", "dpa"))]
    assert order == sorted(order) and order[-1] > 4 * order[0]       # bounded by CENT's softmax rate (R1)


def test_errors_say_what_does_not_fit():
    with pytest.raises(PerfError, match=r"the weights of llama-3.1-70b \(131.4 GiB\) do not fit in 4 x cent-32ch"):
        run_point(PointSpec(model="llama-3.1-70b", capacity="64GB", context=1000))
    with pytest.raises(PerfError, match=r"capacity 8 GiB is less than one cent-32ch module \(16 GiB\)"):
        run_point(PointSpec(model="qwen1.5-7b", capacity="8GB", context=1000))
    with pytest.raises(ValueError, match=r"'12XB' is not a capacity; write e.g. 128GB, 512GiB or 1TB"):
        parse_size("12XB")
    assert parse_size("1TB") == parse_size("1024GB") == 1 << 40
    with pytest.raises(ValueError, match="give exactly one of workload and context"):
        PointSpec(model="qwen1.5-7b", workload="qmsum", context=5)
    no_fc = ModelConfig.from_mapping({"name": "bare", "values": {"layers": 1, "heads": 2, "kv_heads": 1,
                                                                "head_dim": 128, "context": 4096}}, "test")
    point = build_point(PointSpec(model="qwen1.5-7b", context=1000))
    point.model = no_fc
    with pytest.raises(ConfigError, match=r"model bare: values.hidden: missing; the system model needs hidden, "
                                          r"intermediate, vocab \(Hugging Face: hidden_size, intermediate_size"):
        evaluate(point, C.kernel_costs(point.org, point.timing, 128, 2))


def test_hugging_face_fc_shape(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
                                "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256,
                                "max_position_embeddings": 131072}))
    m = ModelConfig.load(str(path))
    assert m.layer_params == ModelConfig.load("llama-3.1-8b").layer_params
    assert (m.hidden, m.intermediate, m.vocab) == (4096, 14336, 128256)


def test_perf_cli_text_and_json(capsys):
    args = ["perf", "--model", "llama-3.1-8b", "--workload", "multifieldqa"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for text in ("tokens/s", "MAC utilisation", "capacity use", "TP 8 x PP 1 on 8 of 8 modules", "time per step:",
                 "attention"):
        assert text in out
    assert main([*args, "--partition", "hfp", "--schedule", "static", "--alloc", "static", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["partition"] == "hfp" and data["batch"] == 7 and data["tokens_per_s"] > 0
    assert abs(sum(v for k, v in data.items() if k.startswith("time_")) - 1) < 1e-9


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "llama-3.1-70b", "--capacity", "64GB", "--context", "1000"], "do not fit in 4 x cent-32ch"),
    (["--model", "qwen1.5-7b", "--capacity", "lots", "--context", "1000"], "'lots' is not a capacity"),
    (["--model", "qwen1.5-7b", "--workload", "nope"], "no such workloads preset"),
    (["--model", "qwen1.5-7b", "--system", "tpu", "--context", "9"], "no such systems preset"),
])
def test_perf_cli_errors_are_one_line(capsys, args, message):
    assert main(["perf", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("pimphony: error:")


def test_bench_perf_meets_one_second(capsys):
    assert main(["bench", "perf", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "(target <= 1000 ms): met" in out and "1,048,576-token context" in out


def test_command_counts_follow_the_layout(gqa4_costs):
    """Every partition and policy issues the MACs the layout implies: a MAC covers 16 bursts (one per
    bank); a head's QK^T reads L x d/16 key bursts and its SV L x d elements = L x d/16 bursts."""
    length = 4096
    expected = 4 * 2 * length * 128 // 16 // 16
    for (partition, schedule), curve in gqa4_costs.attention.items():
        counts = curve.commands(np.array([length]))
        assert counts["mac"][0] == expected, (partition, schedule)
        assert counts["act"][0] > 0 and counts["io"][0] > 0


def test_attention_energy_parts_and_ordering():
    spec = PointSpec(model="llama-3.1-8b", system="cent", capacity="128GB", workload="multifieldqa")
    base = run_point(PointSpec(**{**spec.__dict__, "partition": "hfp", "schedule": "aim", "alloc": "static"}))
    top = run_point(spec)
    for r in (base, top):
        assert set(r.best.energy_nj) == {"act", "mac", "io", "background"}
        assert all(v > 0 for v in r.best.energy_nj.values())
    # the same MACs per token, far less idle-channel background per token
    assert top.best.background_share < base.best.background_share
    assert top.best.attention_nj_per_token < base.best.attention_nj_per_token


def test_fig4_batch_rule_gives_the_papers_batch_labels():
    """Fig. 4's labels: static allocation reserving T_max = L, the whole capacity as KV (our Admitter with the
    fixed-context workload), for LLM-7B-GQA at 16-128 GB and 4K / 32K tokens."""
    from pimphony.experiments.reproduction import FIG4_BATCH, FIG4_CAPACITIES
    from pimphony.model.perf.capacity import Admitter
    from pimphony.model.perf.system import context_workload

    model, org = ModelConfig.load("llama-3.1-8b"), ModuleOrg.load("cent-32ch")
    for ctx, labels in FIG4_BATCH.items():
        workload, t_max = context_workload(ctx, fixed=True)
        assert t_max == ctx and workload.min == workload.max == ctx - 512 and workload.std == 0
        admit = Admitter(model, org, workload, "static", 0, t_max=t_max)
        assert [admit.admit(gb << 30).batch for gb in FIG4_CAPACITIES] == list(labels)
    with pytest.raises(ValueError, match="a fixed context of 512 tokens must exceed the 512 generated tokens"):
        context_workload(512, fixed=True)


def test_background_energy_counts_idle_and_working_channels():
    """Idle channels at p_background for the attention time; working ones add p_active - p_background for
    the cycles they work: with the two equal, background is every channel for the attention time."""
    spec = PointSpec(model="llama-3.1-8b", system="cent", capacity="128GB", workload="multifieldqa",
                     partition="hfp", schedule="aim", alloc="static")
    point = build_point(spec)
    costs = C.kernel_costs(point.org, point.timing, 128, 4)
    flat = dataclasses.replace(point.system, p_active_mw=point.system.p_background_mw)
    low = evaluate(dataclasses.replace(point, system=flat), costs).best
    high = evaluate(point, costs).best
    step = low.step_ns
    attention_time = step * low.parts_ns["attention"] / (step - low.parts_ns.get("pipeline_idle", 0.0))
    expected = 1e-3 * flat.p_background_mw * point.modules * point.org.channels * attention_time
    assert low.energy_nj["background"] == pytest.approx(expected, rel=1e-9)
    assert high.energy_nj["background"] > low.energy_nj["background"]
    assert 0 < high.channel_balance < 1 and 0 < high.attention_mac_utilisation < 1


def test_tcp_balances_channels_and_hfp_does_not():
    spec = PointSpec(model="llama-3.1-8b", system="cent", capacity="512GB", context=1 << 20, schedule="aim",
                     alloc="static")
    tcp = run_point(spec).best
    hfp = run_point(dataclasses.replace(spec, partition="hfp")).best
    assert tcp.channel_balance > 0.99 and hfp.channel_balance < 0.2


def test_an_unmeasured_hfp_span_is_refused():
    point = build_point(PointSpec(model="llama-3.1-8b", context=4096, partition="hfp"))
    bad = dataclasses.replace(point, system=dataclasses.replace(point.system, hfp_span=16))
    with pytest.raises(PerfError, match="hfp_span 16 is not one of the measured spans 1, 2, 4, 8"):
        evaluate(bad, C.kernel_costs(point.org, point.timing, 128, 4))
