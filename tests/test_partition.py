"""HFP and TCP: coordinates, packing, row allocation, and which channels get work."""

import numpy as np
import pytest

from pimphony.model.channel import ChannelArray
from pimphony.model.config import ModelConfig, ModuleOrg
from pimphony.model.isa import Opcode
from pimphony.model.numerics import to_bf16
from pimphony.scheduler.lower import AttentionLowering
from pimphony.scheduler.partition import PartitionError, make_partition

ORG = ModuleOrg.load("aimx-16ch")


@pytest.mark.parametrize(("name", "d"), [(n, d) for n in ("tcp", "hfp") for d in (64, 80, 96, 128, 256)]
                         + [("hfp-2", 64), ("hfp-2", 96), ("hfp-8", 128), ("hfp-4", 256), ("hfp-16", 128)])
def test_packed_rows_hold_every_element_where_locate_says(name, d):
    part = make_partition(name, ORG, d)
    lengths = np.array([1, 300, 2049])
    places = part.place(lengths, kv_heads=2)
    rng = np.random.default_rng(d)
    chans = ChannelArray(ORG)
    data = {}
    for p in places:
        k = to_bf16(rng.standard_normal((p.length, d)))
        v = to_bf16(rng.standard_normal((p.length, d)))
        data[(p.request, p.kv_head)] = (k, v)
        part.store(chans, p, k, v)
    for p in places:
        k, v = data[(p.request, p.kv_head)]
        t = np.arange(p.length)
        loc = part.locate_k(p, t)
        for j in rng.choice(p.length, size=min(p.length, 40), replace=False):
            bank = chans.read_bank(int(loc["channel"][j]), int(loc["bank"][j]), int(loc["row"][j]))
            assert np.array_equal(bank[loc["column"][j]:loc["column"][j] + d], k[j])
        tt = rng.integers(0, p.length, 200)
        dims = rng.integers(0, d, 200)
        lv = part.locate_v(p, tt, dims)
        got = [chans.read_bank(int(c), int(b), int(r))[int(col)]
               for c, b, r, col in zip(lv["channel"], lv["bank"], lv["row"], lv["column"], strict=True)]
        assert np.array_equal(got, v[tt, dims])


@pytest.mark.parametrize("name", ["tcp", "hfp", "hfp-2", "hfp-8"])
def test_no_two_tokens_share_a_location(name):
    part = make_partition(name, ORG, 128)
    places = part.place(np.array([5000, 777]), kv_heads=8)
    seen = set()
    for p in places:
        t = np.arange(p.length)
        loc = part.locate_k(p, t)
        keys = set(zip(loc["channel"].tolist(), loc["bank"].tolist(), loc["row"].tolist(), loc["column"].tolist(), strict=True))
        assert len(keys) == p.length and not keys & seen
        seen |= keys


def test_rows_run_out_with_a_clear_error():
    part = make_partition("hfp", ORG, 128)
    with pytest.raises(PartitionError, match=r"request 0, KV head 0: needs rows 0..\d+ in module 0, channels 0..0; "
                                             r"a bank has 16384 rows"):
        part.place(np.array([16 * 8 * 16384 + 1]), kv_heads=1)


def test_hfp_span_must_tile_the_slices():
    with pytest.raises(PartitionError, match=r"an HFP span of 3 channels does not tile 16 channels in 8-channel V "
                                             r"slices; use a divisor or a multiple of 8 that divides 16"):
        make_partition("hfp-3", ORG, 128)
    with pytest.raises(PartitionError, match=r"unknown partition 'hfp-x'; choose one of hfp, hfp-K \(K channels\), tcp"):
        make_partition("hfp-x", ORG, 128)


@pytest.mark.parametrize("span", [1, 2, 4, 8, 16])
def test_hfp_pairs_take_span_key_channels_inside_their_v_slices(span):
    part = make_partition(f"hfp-{span}", ORG, 128)
    places = part.place(np.array([64] * 5), kv_heads=2)
    for p in places:
        assert len(p.k_channels) == span and set(p.k_channels) <= set(p.v_channels)
        assert len(p.v_channels) == max(8, span)
    firsts = [p.k_channels[0] for p in places[:ORG.channels // span]]
    assert len(set(firsts)) == len(firsts)          # consecutive pairs take distinct key channels


def test_head_dim_too_wide_for_a_v_slice():
    with pytest.raises(PartitionError, match=r"head_dim 512 needs 32 channels for one V slice; the module has 16"):
        make_partition("tcp", ORG, 512)


def qk_sv_channels(name, length, model):
    part = make_partition(name, ORG, model.head_dim)
    places = part.place(np.array([length]), model.kv_heads)
    prog = AttentionLowering(part, model.group, ORG.obuf_entries).lower(places)[0]
    qk, sv = set(), set()
    lanes = np.zeros((ORG.channels, ORG.banks), bool)
    for step in prog.steps:
        for ins in step.qk:
            if ins.op == Opcode.MAC:
                qk.update(ins.channels())
        for ins in step.sv:
            if ins.op == Opcode.MAC:
                sv.update(ins.channels())
    for p in places:
        loc = part.locate_k(p, np.arange(p.length))
        lanes[loc["channel"], loc["bank"]] = True
    return qk, sv, lanes


LLAMA8B = ModelConfig.load("llama-3.1-8b")


@pytest.mark.parametrize("length", [257, 1000, 4099, 40000])
def test_tcp_gives_every_channel_work_past_256_tokens(length):
    """Paper Sec IV-C: with 16 x 16 banks, full activation once a request exceeds 256 tokens (QK^T)
    and 32 tokens (SV)."""
    qk, sv, lanes = qk_sv_channels("tcp", length, LLAMA8B)
    assert qk == set(range(16)) and sv == set(range(16)) and lanes.all()


def test_tcp_thresholds_are_256_for_qk_and_32_for_sv():
    _, _, lanes = qk_sv_channels("tcp", 255, LLAMA8B)
    assert not lanes.all()                       # one bank of the module still has no token
    _, _, lanes = qk_sv_channels("tcp", 256, LLAMA8B)
    assert lanes.all()
    _, sv, _ = qk_sv_channels("tcp", 16, LLAMA8B)
    assert sv == set(range(8))                   # one 16-token burst: one slice of 8 channels
    _, sv, _ = qk_sv_channels("tcp", 32, LLAMA8B)
    assert sv == set(range(16))


@pytest.mark.parametrize("length", [257, 4099, 40000])
def test_hfp_at_batch_one_leaves_channels_idle(length):
    """HFP puts each (request, KV head) on one channel: Llama-3.1-8B's 8 KV heads use 8 of 16 channels
    for QK^T however long the context."""
    qk, _, lanes = qk_sv_channels("hfp", length, LLAMA8B)
    assert qk == {0, 1, 2, 3, 8, 9, 10, 11}          # dealt over the two V slices first
    assert lanes.sum() == 8 * 16
