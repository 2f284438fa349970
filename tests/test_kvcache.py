"""KV-cache allocation: chunk geometry, lazy DPA allocation, the static baseline, errors, no leaks."""

import copy

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pimphony.model.config import ModuleOrg
from pimphony.model.kvcache import ChunkLayout, DpaAllocator, StaticAllocator, Status

ORG = ModuleOrg.load("aimx-16ch")
LAYOUT = ChunkLayout(ORG, 128)


def test_one_mib_chunk_geometry():
    assert (LAYOUT.rows_per_chunk, LAYOUT.k_tokens, LAYOUT.v_tokens, LAYOUT.chunks) == (2, 4096, 4096, 8192)
    cent = ChunkLayout(ModuleOrg.load("cent-32ch"), 128)
    assert (cent.rows_per_chunk, cent.k_tokens, cent.v_tokens, cent.chunks) == (1, 4096, 4096, 16384)
    d96 = ChunkLayout(ORG, 96)
    assert (d96.k_tokens, d96.v_tokens) == (256 * 2 * 10, 2 * 2 * 1024)
    with pytest.raises(ValueError, match=r"chunk_bytes \(1000\) must be a multiple of one row in every bank"):
        ChunkLayout(ORG, 128, chunk_bytes=1000)


def state(a: DpaAllocator):
    return list(a.free), copy.deepcopy({k: (r.length, r.k_chunks, r.v_chunks, r.table) for k, r in a.requests.items()})


def test_lazy_allocation_and_release():
    a = DpaAllocator(LAYOUT, segments=3, max_requests=4)
    assert a.open(7, 1) == Status.OK
    assert a.held_chunks() == 2 * 3
    for _ in range(4095):
        assert a.append(7) == Status.OK
    assert a.held_chunks() == 6 and a.requests[7].length == 4096
    assert a.append(7) == Status.OK                         # token 4097 crosses a boundary: K and V of 3 segments
    assert a.held_chunks() == 12
    assert a.translate(7, 2, 1, 4096) == (Status.OK, a.requests[7].table[1][2][1], 0)
    assert a.close(7) == Status.OK and a.held_chunks() == 0
    a.check()
    assert len(a.free) == LAYOUT.chunks


def test_allocation_order_is_fixed():
    a = DpaAllocator(LAYOUT, segments=2, max_requests=2)
    a.open(1, 5000)                                         # 2 K and 2 V chunks per segment
    assert a.requests[1].table == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]


def test_static_reserves_t_max():
    s = StaticAllocator(LAYOUT, segments=2, max_requests=4, t_max=10000)
    assert s.open(1, 100) == Status.OK
    assert s.held_chunks() == 2 * 2 * 3                     # ceil(10000 / 4096) = 3 chunks per segment, K and V
    assert s.append(1, 9900) == Status.OK
    assert s.held_chunks() == 12
    before = state(s)
    assert s.append(1) == Status.PAST_END and state(s) == before
    assert s.open(2, 10001) == Status.PAST_END


ERRORS = [
    ("unknown append", lambda a: a.append(99), Status.UNKNOWN_REQUEST),
    ("unknown close", lambda a: a.close(99), Status.UNKNOWN_REQUEST),
    ("duplicate open", lambda a: a.open(1, 10), Status.DUPLICATE_REQUEST),
    ("open too large", lambda a: a.open(5, 4096 * 20), Status.OUT_OF_CHUNKS),
    ("append past the pool", lambda a: a.append(1, 4096 * 20), Status.OUT_OF_CHUNKS),
    ("table full", lambda a: (a.open(2, 1), a.open(3, 1))[1], Status.TABLE_FULL),
    ("zero-length open", lambda a: a.open(4, 0), Status.BAD_LENGTH),
    ("zero append", lambda a: a.append(1, 0), Status.BAD_LENGTH),
    ("translate past the length", lambda a: a.translate(1, 0, 0, 10)[0], Status.PAST_END),
]


@pytest.mark.parametrize(("name", "op", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_change_no_state(name, op, status):
    a = DpaAllocator(LAYOUT, segments=2, max_requests=2, chunks=40)
    assert a.open(1, 10) == Status.OK
    if name == "table full":
        assert op(a) == status                              # the second open hits the limit
        assert set(a.requests) == {1, 2}
        return
    before = state(a)
    assert op(a) == status
    assert state(a) == before
    a.check()


def test_headroom_blocks_admission():
    a = DpaAllocator(LAYOUT, segments=1, max_requests=8, chunks=10, headroom=4)
    assert a.open(1, 4096 * 3) == Status.OK                 # 6 chunks, 4 left = headroom
    assert a.open(2, 1) == Status.OUT_OF_CHUNKS
    assert a.append(1) == Status.OK                         # growth may use the headroom


def test_utilisation():
    a = DpaAllocator(LAYOUT, segments=1, max_requests=2)
    a.open(1, 1024)
    assert a.utilisation() == pytest.approx(1024 / 4096)
    s = StaticAllocator(LAYOUT, segments=1, max_requests=2, t_max=8192)
    s.open(1, 1024)
    assert s.utilisation() == pytest.approx(1024 / 8192)


class AllocatorMachine(RuleBasedStateMachine):
    """Random interleavings of open / append / close / translate; the pool never leaks."""

    def __init__(self):
        super().__init__()
        self.a = DpaAllocator(ChunkLayout(ORG, 128), segments=2, max_requests=4, chunks=24)
        self.model: dict[int, int] = {}

    @rule(req=st.integers(0, 5), length=st.integers(0, 4096 * 7))
    def open(self, req, length):
        before = state(self.a)
        status = self.a.open(req, length)
        if status == Status.OK:
            self.model[req] = length
        else:
            assert state(self.a) == before

    @rule(req=st.integers(0, 5), tokens=st.integers(0, 5000))
    def append(self, req, tokens):
        before = state(self.a)
        status = self.a.append(req, tokens)
        if status == Status.OK:
            self.model[req] += tokens
        else:
            assert state(self.a) == before

    @rule(req=st.integers(0, 5))
    def close(self, req):
        status = self.a.close(req)
        assert (status == Status.OK) == (req in self.model)
        self.model.pop(req, None)

    @rule(req=st.integers(0, 5), token=st.integers(0, 40000))
    def translate(self, req, token):
        status, chunk, offset = self.a.translate(req, 1, 0, token)
        if req in self.model and token < self.model[req]:
            assert status == Status.OK and chunk in self.a.requests[req].table[0][1] and 0 <= offset < 4096
        else:
            assert status != Status.OK

    @invariant()
    def no_leak(self):
        self.a.check()
        assert {k: r.length for k, r in self.a.requests.items()} == self.model


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_fits_says_whether_an_empty_pool_could_ever_hold_a_request():
    """DPA: the request's own chunks against the pool; static: its T_max reservation; both: the longest
    request. A request that fits opens on an empty pool, one that does not is refused."""
    per = LAYOUT.k_tokens                                        # tokens of one chunk at d_h = 128
    dpa = DpaAllocator(LAYOUT, segments=2, max_requests=4, chunks=8, max_tokens=3 * per)
    assert dpa.fits(2 * per) and not dpa.fits(2 * per + 1)       # 3 chunks of K and of V = 12 > 8
    assert not DpaAllocator(LAYOUT, segments=2, max_requests=4, chunks=64, max_tokens=per).fits(per + 1)
    static = StaticAllocator(LAYOUT, segments=2, max_requests=4, t_max=3 * per, chunks=8)
    assert not static.fits(1) and StaticAllocator(LAYOUT, 2, 4, t_max=2 * per, chunks=8).fits(1)
    for alloc, length in ((dpa, 2 * per), (dpa, 2 * per + 1), (static, 1)):
        assert (alloc.open(0, length) == Status.OK) == alloc.fits(length)
        alloc.close(0)
