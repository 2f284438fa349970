# amaranth: UnusedElaboratable=no
"""The DPA controller's components alone, in amaranth.sim: per-cycle strings for the free list and the
config buffer, the VA2PA addressing, the program loader's answers, and the decoder against the golden
dispatcher's expansion."""

from __future__ import annotations

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from helpers import run_cycles

from pimphony.model.config import ModuleOrg
from pimphony.model.dpa import DpaConfig, DpaOp, DpaOperation, load_program
from pimphony.model.hub import DpaDispatcher
from pimphony.model.isa import Format, Opcode
from pimphony.rtl.dpa import ConfigBuffer, Decoder, FreeList, ProgramLoader, Va2PaTable
from pimphony.rtl.layouts import OpcodeShape, StatusShape, instruction_layout
from pimphony.scheduler.dpa import head_program

ORG = ModuleOrg.load("aimx-16ch")
FMT = Format.for_org(ORG)


def small_config(**kw) -> DpaConfig:
    args = {"max_requests": 2, "segments": 2, "max_chunks_per_segment": 4, "chunks": 24} | kw
    return DpaConfig(ORG, 128, **args)


def test_free_list_rebuilds_then_pops_in_order_and_recycles():
    """Six chunks: not ready for 6 cycles while it writes 0..5; pops hand out 0, 1, 2 (each on ``head`` the
    cycle after its pop, held until the next); chunk 1, returned in cycle 9, comes back after 3, 4 and 5."""
    dut = FreeList(6)
    got = run_cycles(dut, {"pop": "000000111011110", "push": "000000000100000", "push_chunk": lambda c: 1},
                     {"ready": lambda ctx: ctx.get(dut.ready), "count": lambda ctx: ctx.get(dut.count),
                      "head": lambda ctx: ctx.get(dut.head)}, 15)
    assert got["ready"] == "000000111111111"
    assert got["count"] == "666666654343210"
    assert got["head"][7:] == "01223451"


def test_va2pa_addresses_are_dense_and_distinct():
    dut = Va2PaTable(slots=3, segments=2, vchunks=4, chunk_bits=5)
    addresses = [dut.address(s, g, v) for s in range(3) for g in range(2) for v in range(4)]
    assert sorted(addresses) == list(range(dut.depth)) == list(range(3 * 2 * 4))


def test_va2pa_reads_both_tables_the_next_cycle_and_holds():
    """Entry 0 and 1 of the K table, entry 1 of the V table written; reads of 1 and 0 answer with the K and
    the V entry the next cycle and hold them; each table is read at its own address (the V table at 1
    while the K table reads 0)."""
    dut = Va2PaTable(slots=1, segments=1, vchunks=4, chunk_bits=5)

    def letter(x):
        return chr(ord("a") + x - 20) if x >= 20 else "."

    got = run_cycles(dut, {"write_en": "111000000", "write_addr": lambda c: (0, 1, 1)[c] if c < 3 else 0,
                           "write_kv": "001000000", "write_data": lambda c: 20 + c,
                           "read_en": "000101100", "read_addr[0]": lambda c: {3: 1, 5: 0}.get(c, 3),
                           "read_addr[1]": lambda c: {3: 1, 5: 0, 6: 1}.get(c, 3)},
                     {"k": lambda ctx: letter(ctx.get(dut.read_data[0])),
                      "v": lambda ctx: letter(ctx.get(dut.read_data[1]))}, 9)
    assert got["k"][4:] == "bba.."
    assert got["v"][4:] == "cc.cc"


def test_config_buffer_opens_looks_up_and_closes():
    """Two slots: open 7 (slot 0) and 9 (slot 1), each applied at the end of the cycle after it is asked
    for, ``busy`` high in that cycle; the buffer is then full; a lookup answers two cycles later (9
    finds slot 1 with its values); closing 7 frees slot 0 a cycle later (the parent names the slot each
    write goes to: the free one for an open, the looked-up one for a close)."""
    dut = ConfigBuffer(small_config(), 20)
    ids = [7, 9, 9, 9, 7, 7, 9, 5, 5]
    got = run_cycles(dut, {"request": lambda c: ids[c], "lookup": "111111111", "open": "110000000",
                           "close": "000010000", "at": lambda c: (0, 1, 0, 0, 0, 0, 0, 0, 0)[c],
                           "open_id": lambda c: ids[c], "write.length": lambda c: 100 + c,
                           "write.have[0]": lambda c: c, "write.have[1]": lambda c: 1},
                     {"found": lambda ctx: ctx.get(dut.found), "slot": lambda ctx: ctx.get(dut.slot),
                      "free": lambda ctx: ctx.get(dut.free), "free_slot": lambda ctx: ctx.get(dut.free_slot),
                      "busy": lambda ctx: ctx.get(dut.busy),
                      "length": lambda ctx: ctx.get(dut.current.length) - 100 if ctx.get(dut.found) else "."}, 9)
    assert got["busy"] == "011001000"
    assert got["found"] == "000001111"
    assert got["slot"][5:9] == "1001"
    assert got["free"] == "111000111"
    assert got["free_slot"] == "001000000"
    assert got["length"][5:9] == "1001"


def _load(dut: ProgramLoader, ops) -> list[StatusShape]:
    """Apply PROGRAM / LOAD operations to the loader, one per two cycles (the word is on ``word`` a
    cycle before its ``load``, as the controller holds it); the LOADs' answers."""
    answers = []

    async def bench(ctx):
        for op in ops:
            ctx.set(dut.arg, op.arg)
            ctx.set(dut.word.as_value(), op.word)
            ctx.set(dut.program, 0)
            ctx.set(dut.load, 0)
            await ctx.tick()
            ctx.set(dut.program, int(op.op == DpaOp.PROGRAM and op.arg != 0))
            ctx.set(dut.load, int(op.op == DpaOp.LOAD))
            if op.op == DpaOp.LOAD:
                answers.append(ctx.get(dut.load_status))
            await ctx.tick()
        answers.append(("complete", ctx.get(dut.complete), ctx.get(dut.entries)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return answers


def test_program_loader_checks_the_program():
    """A LOAD before PROGRAM is refused; the attention program loads word by word and completes with its
    body in the buffer; then a third DYN_LOOP and a word without channels are refused; a buffer of 2
    entries is full before the program is."""
    program = head_program(ORG, 8, 128)
    ops = load_program(program, FMT)
    words = [op for op in ops if op.op == DpaOp.LOAD]
    kinds = [FMT.decode_instruction(op.word).op for op in words]
    answers = _load(ProgramLoader(small_config()), [words[0], *ops])
    assert answers[0] == StatusShape.BAD_PROGRAM
    assert all(a == StatusShape.OK for a in answers[1:-1])
    body = sum(k not in (Opcode.DYN_LOOP, Opcode.DYN_MODI) for k in kinds)
    assert answers[-1] == ("complete", 1, body)
    loop = words[kinds.index(Opcode.DYN_LOOP)]
    word = instruction_layout(FMT).const({"op": OpcodeShape.MAC, "ch_mask": 0}).as_value().value
    no_channel = DpaOperation(DpaOp.LOAD, word=word)                   # the ISA cannot encode it: bits by hand
    extra = _load(ProgramLoader(small_config()), [*ops, loop, no_channel])
    assert extra[-3:-1] == [StatusShape.BAD_PROGRAM, StatusShape.BAD_PROGRAM]
    full = _load(ProgramLoader(small_config(program_entries=2)), ops)
    assert full[:-1].count(StatusShape.PROGRAM_FULL) == body - 2 and full[-1][1:] == (0, 2)


class _LoaderAndDecoder(wiring.Component):
    """A loader feeding a decoder, the way the controller wires them; VA2PA comes from the bench."""

    def __init__(self, config: DpaConfig):
        self.loader = ProgramLoader(config)
        self.decoder = Decoder(config, self.loader)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.loader, m.submodules.decoder = self.loader, self.decoder
        lo, dec = self.loader, self.decoder
        m.d.comb += [dec.ib_data.eq(lo.read_data), lo.read_addr.eq(dec.ib_addr), lo.read_en.eq(dec.ib_en)]
        for name in ("block", "entries", "marks", "row_tokens", "masks", "slices_log2"):
            m.d.comb += getattr(dec, name).eq(getattr(lo, name))
        return m


@pytest.mark.parametrize(("group", "length", "stall"), [(8, 700, False), (1, 1500, True), (4, 33, False)])
def test_decoder_expands_like_the_golden_dispatcher(group, length, stall):
    """The decoder, fed a program by the loader (each word a cycle before its load) and the VA2PA tables' answer a
    cycle after each request, emits the golden dispatcher's instructions for the length, in order (every
    other cycle stalled if asked)."""
    config = small_config(max_chunks_per_segment=8)
    top = _LoaderAndDecoder(config)
    dec = top.decoder
    program = head_program(ORG, group, 128)
    rpc = config.layout.rows_per_chunk
    lrpc = (rpc - 1).bit_length()

    def chunk(kind: int, vchunk: int) -> int:
        return 3 + 5 * vchunk + kind

    emitted = []

    async def bench(ctx):
        for op in load_program(program, FMT):
            ctx.set(top.loader.arg, op.arg)
            ctx.set(top.loader.word.as_value(), op.word)
            ctx.set(top.loader.program, 0)
            ctx.set(top.loader.load, 0)
            await ctx.tick()                        # the word a cycle before its load
            ctx.set(top.loader.program, int(op.op == DpaOp.PROGRAM))
            ctx.set(top.loader.load, int(op.op == DpaOp.LOAD))
            await ctx.tick()
        ctx.set(top.loader.load, 0)
        ctx.set(dec.length, length)
        ctx.set(dec.start, 1)
        await ctx.tick()
        ctx.set(dec.start, 0)
        ctx.set(dec.enable, 1)
        cycle, pending = 0, None
        while True:
            for kind in range(2):
                ctx.set(dec.va_data[kind], pending[kind] if pending is not None else 0)
            ready = not (stall and cycle % 2)
            ctx.set(dec.out.ready, int(ready))
            if ready and ctx.get(dec.out.valid):
                out = ctx.get(dec.out.payload)
                emitted.append((FMT.decode_instruction(out.ins.as_value().value), bool(out.sv)))
            if ctx.get(dec.done):
                break
            if ctx.get(dec.va_en):
                va = ctx.get(dec.va)
                pending = (chunk(0, int(va.vchunk[0])), chunk(1, int(va.vchunk[1])))
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    def translate(kind: int, v: int) -> int:
        return (chunk(kind, v >> lrpc) << lrpc) | (v & (rpc - 1))

    golden = [(ins, sv) for qk, svs in DpaDispatcher(ORG, 128).expand(program, translate, length)
              for ins, sv in [*((i, False) for i in qk), *((i, True) for i in svs)]]
    assert emitted == golden
