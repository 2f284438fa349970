"""Verification environment of the DPA controller: stimulus, driver, sinks, monitor and scoreboard.

The scoreboard holds the golden :class:`~pimphony.model.dpa.DpaControllerModel`. When the driver's
operation is accepted the model steps and its response and RUN instructions become the expectation;
every instruction on ``ins_out`` and every response on ``resp`` must then match, in order, and a
response must not come before the last instruction of its RUN. A reset clears the expectation (the
operation in flight is abandoned) and resets the model.

Random choices come from one seeded generator (printed by the tests), so every run replays.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from pimphony.model.dpa import DpaConfig, DpaControllerModel, DpaOp, DpaOperation, DpaResponse
from pimphony.model.isa import LOOP_ROW_UNIT, Format, Instruction, Modi, Opcode, dyn_loop, dyn_modi
from pimphony.model.kvcache import Status
from pimphony.model.program import DpaProgram
from pimphony.scheduler.dpa import head_program

from . import coverage
from .host import encode_operation
from .stream import CocotbPort, Sink, Source, idle_pattern, ready_pattern


def testbench_program(config: DpaConfig) -> DpaProgram:
    """The program the block testbench loads: one GQA (g = 4) attention pair at the config's head_dim."""
    return head_program(config.org, 4, config.head_dim)


def fetched_entries(program: DpaProgram, block: int, length: int) -> int:
    """Buffer entries a RUN decodes: per block, the prologue and each loop body once per row it touches
    (from the program's structure, independently of the decoder)."""
    plain = [sum(1 for ins in part if ins.op < Opcode.DYN_LOOP) for part in (program.prologue, program.qk,
                                                                                program.sv)]
    rows = [program.qk[0].row * LOOP_ROW_UNIT, program.sv[0].row * LOOP_ROW_UNIT]
    total = 0
    for t0 in range(0, length, block):
        t1 = min(length, t0 + block)
        total += plain[0] + sum(plain[k + 1] * (math.ceil(t1 / rows[k]) - t0 // rows[k]) for k in range(2))
    return total


def raw_instruction(fmt: Format, op: int, ch_mask: int = 1, op_size_m1: int = 0, **fields) -> int:
    """An instruction word assembled field by field, so that malformed words can be built."""
    layout = fmt.instruction_fields()
    values = dict.fromkeys((name for name, _ in layout), 0) | fields | {"op": op, "ch_mask": ch_mask,
                                                                       "op_size": op_size_m1}
    return fmt.pack_fields(layout, values, "raw instruction")


def error_cases(config: DpaConfig) -> list[tuple[DpaOperation, Status]]:
    """Every error path, each with the status the specification (:mod:`pimphony.model.dpa`) gives.

    Needs a pool of exactly one longest request (``chunks = 2 x segments x max_chunks_per_segment``)
    that also holds ``max_requests`` one-chunk requests, on a module with 16 channels.
    """
    fmt = Format.for_org(config.org)
    lay, S, R, P = config.layout, config.segments, config.max_requests, config.program_entries
    per_chunk_step = 2 * S                                   # chunks a request takes per K/V chunk
    if config.n_chunks != per_chunk_step * config.max_chunks_per_segment or R * per_chunk_step > config.n_chunks \
            or config.org.channels != 16 or R < 2 or P < 4:
        raise ValueError("error_cases needs the configuration its docstring describes")

    def w(ins: Instruction) -> int:
        return fmt.encode_instruction(ins)

    row = lay.k_tokens // lay.rows_per_chunk
    act, all_ch, mx = Instruction(Opcode.ACT, 0xFFFF), 0xFFFF, config.max_tokens
    bad_slices = all_ch >> config.slice_channels // 2          # channels that are not whole V slices
    cases = [
        (DpaOperation(DpaOp.LOAD, word=w(act)), Status.BAD_PROGRAM),                        # LOAD before PROGRAM
        (DpaOperation(DpaOp.PROGRAM, arg=0), Status.BAD_LENGTH),
        (DpaOperation(DpaOp.RUN, 1), Status.UNKNOWN_REQUEST),
        (DpaOperation(DpaOp.OPEN, 1, arg=0), Status.BAD_LENGTH),
        (DpaOperation(DpaOp.OPEN, 1, arg=mx + 1), Status.PAST_END),
        (DpaOperation(DpaOp.OPEN, 1, arg=100), Status.OK),
        (DpaOperation(DpaOp.OPEN, 1, arg=5), Status.DUPLICATE_REQUEST),
        (DpaOperation(DpaOp.APPEND, 0, arg=1), Status.UNKNOWN_REQUEST),
        (DpaOperation(DpaOp.APPEND, 1, arg=0), Status.BAD_LENGTH),
        (DpaOperation(DpaOp.APPEND, 1, arg=mx), Status.PAST_END),
        (DpaOperation(DpaOp.TRANSLATE, 1, arg=100), Status.PAST_END),                       # token past the length
        (DpaOperation(DpaOp.TRANSLATE, 1, segment=S, arg=0), Status.PAST_END),              # no such segment
        (DpaOperation(DpaOp.TRANSLATE, 0, arg=0), Status.UNKNOWN_REQUEST),
        (DpaOperation(DpaOp.RUN, 1, segment=S), Status.PAST_END),
        (DpaOperation(DpaOp.RUN, 1), Status.BAD_PROGRAM),                                    # nothing loaded
        (DpaOperation(DpaOp.CLOSE, 0), Status.UNKNOWN_REQUEST),
        (DpaOperation(DpaOp.OPEN, 2, arg=mx), Status.OUT_OF_CHUNKS),                         # the whole pool
        *((DpaOperation(DpaOp.OPEN, r, arg=1), Status.OK) for r in range(2, R + 1)),
        (DpaOperation(DpaOp.OPEN, R + 1, arg=1), Status.TABLE_FULL),
        (DpaOperation(DpaOp.APPEND, R, arg=mx - 1), Status.OUT_OF_CHUNKS),
        (DpaOperation(DpaOp.APPEND, R, arg=lay.k_tokens - 1), Status.OK),                   # fills its chunks
        (DpaOperation(DpaOp.CLOSE, R), Status.OK),
        (DpaOperation(DpaOp.APPEND, R, arg=1), Status.UNKNOWN_REQUEST),                     # closed
        (DpaOperation(7), Status.BAD_OP),
        (DpaOperation(15), Status.BAD_OP),
        (DpaOperation(DpaOp.PROGRAM, arg=lay.k_tokens), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_modi(Modi.ROW))), Status.BAD_PROGRAM),         # before any loop
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, 1, all_ch))), Status.BAD_PROGRAM),   # V loop first
        (DpaOperation(DpaOp.LOAD, word=raw_instruction(fmt, 12)), Status.BAD_PROGRAM),      # no such opcode
        (DpaOperation(DpaOp.LOAD, word=raw_instruction(fmt, Opcode.ACT, op_size_m1=1)), Status.BAD_PROGRAM),
        (DpaOperation(DpaOp.LOAD, word=raw_instruction(fmt, Opcode.MAC, ch_mask=0)), Status.BAD_PROGRAM),
        (DpaOperation(DpaOp.LOAD, word=w(act)), Status.OK),                                  # the prologue
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(0, 2 * row, 2, all_ch))), Status.BAD_PROGRAM),  # not a chunk's rows
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(0, row, 2, all_ch))), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=raw_instruction(fmt, Opcode.DYN_MODI, gbuf=3)), Status.BAD_PROGRAM),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, P - 2, all_ch))), Status.BAD_PROGRAM),  # K body empty
        (DpaOperation(DpaOp.LOAD, word=w(dyn_modi(Modi.ROW))), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, P - 2, all_ch))), Status.BAD_PROGRAM),  # MODI pending
        (DpaOperation(DpaOp.LOAD, word=w(act)), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, P - 2, bad_slices))), Status.BAD_PROGRAM),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, P - 2, all_ch))), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=w(dyn_loop(1, row, P - 2, all_ch))), Status.BAD_PROGRAM),  # a third loop
        (DpaOperation(DpaOp.RUN, 1), Status.BAD_PROGRAM),                                    # V body empty
        *((DpaOperation(DpaOp.LOAD, word=w(act)), Status.OK) for _ in range(P - 2)),        # fills the buffer
        (DpaOperation(DpaOp.LOAD, word=w(act)), Status.PROGRAM_FULL),
        (DpaOperation(DpaOp.RUN, 1), Status.OK),
        (DpaOperation(DpaOp.LOAD, word=w(act)), Status.PROGRAM_FULL),
        (DpaOperation(DpaOp.RUN, 1), Status.OK),
    ]
    return cases


class OperationSource:
    """Random operations, biased by a shadow golden model towards ones that do something: most name
    an open request; lengths are often short or at chunk boundaries; one in ten is an error on purpose."""

    def __init__(self, config: DpaConfig, rng: np.random.Generator, ids: int | None = None):
        self.config, self.rng = config, rng
        self.ids = config.max_requests + 2 if ids is None else ids
        self.shadow = DpaControllerModel(config)
        self.chunk_tokens = config.layout.k_tokens

    def length(self, upto: int) -> int:
        """Half short (within one chunk), a quarter at a chunk boundary (-1, 0, +1), a quarter anywhere."""
        rng, ct = self.rng, self.chunk_tokens
        u = rng.random()
        if u < 0.5:
            return int(rng.integers(1, min(ct, upto) + 1))
        if u < 0.75:
            return int(max(1, min(upto, ct * rng.integers(1, 5) + rng.integers(-1, 2))))
        return int(rng.integers(1, max(2, upto + 1)))

    def next(self) -> DpaOperation:
        rng, cfg = self.rng, self.config
        open_ids = list(self.shadow.alloc.requests)
        known = open_ids and rng.random() < 0.85
        rid = int(rng.choice(open_ids)) if known else int(rng.integers(0, self.ids))
        kind = rng.choice(["open", "append", "close", "translate", "run", "error"],
                          p=[0.25, 0.25, 0.17, 0.15, 0.08, 0.10])
        if kind == "open":
            closed = [i for i in range(self.ids) if i not in self.shadow.alloc.requests]
            rid = int(rng.choice(closed)) if closed and rng.random() < 0.8 else rid
            op = DpaOperation(DpaOp.OPEN, rid, arg=self.length(cfg.max_tokens // 2))
        elif kind == "append":
            grow = 1 if rng.random() < 0.5 else self.length(cfg.max_tokens // 4)       # decode steps add 1
            op = DpaOperation(DpaOp.APPEND, rid, arg=grow)
        elif kind == "close":
            op = DpaOperation(DpaOp.CLOSE, rid)
        elif kind == "translate":
            length = self.shadow.alloc.requests[rid].length if rid in self.shadow.alloc.requests else 100
            op = DpaOperation(DpaOp.TRANSLATE, rid, int(rng.integers(0, cfg.segments)), int(rng.integers(0, 2)),
                           int(rng.integers(0, length)))
        elif kind == "run":
            op = DpaOperation(DpaOp.RUN, rid, int(rng.integers(0, cfg.segments)))
        else:
            op = [DpaOperation(int(rng.integers(7, 16))), DpaOperation(DpaOp.APPEND, rid, arg=0),
                  DpaOperation(DpaOp.OPEN, rid, arg=cfg.max_tokens + 1),
                  DpaOperation(DpaOp.TRANSLATE, rid, cfg.segments, 0, 0)][int(rng.integers(0, 4))]
        self.shadow.step(op)
        return op

    def close_all(self) -> list[DpaOperation]:
        """CLOSE for every request the shadow model holds open."""
        ops = [DpaOperation(DpaOp.CLOSE, r) for r in list(self.shadow.alloc.requests)]
        for op in ops:
            self.shadow.step(op)
        return ops


class DpaScoreboard:
    """Expected responses and instructions from the golden model; errors as they are found."""

    def __init__(self, config: DpaConfig):
        self.model = DpaControllerModel(config)
        self.expected: deque[tuple[DpaOperation, DpaResponse, deque[tuple[Instruction, bool]]]] = deque()
        self.errors: list[str] = []
        self.responses: list[DpaResponse] = []
        self.instructions = 0

    def accepted(self, op: DpaOperation) -> None:
        response, emitted = self.model.step(op)
        self.expected.append((op, response, deque(emitted)))

    def instruction(self, cycle: int, ins: Instruction, sv: bool) -> None:
        self.instructions += 1
        if not self.expected or not self.expected[0][2]:
            self.errors.append(f"cycle {cycle}: unexpected instruction {ins}")
            return
        want = self.expected[0][2].popleft()
        if (ins, sv) != want:
            self.errors.append(f"cycle {cycle}: {self.expected[0][0]} emitted {ins} (sv={sv}), expected {want}")

    def response(self, cycle: int, got: DpaResponse) -> None:
        self.responses.append(got)
        if not self.expected:
            self.errors.append(f"cycle {cycle}: response {got} to no operation")
            return
        op, want, left = self.expected.popleft()
        coverage.sample_response(op.op, got.status)
        if left:
            self.errors.append(f"cycle {cycle}: {op} answered with {len(left)} instructions still to come")
        if got != want:
            self.errors.append(f"cycle {cycle}: {op} answered {got}, expected {want}")

    def reset(self) -> None:
        self.model.reset()
        self.expected.clear()


class DpaBench:
    """Drives ``mgmt`` (with idle cycles), ``resp.ready`` and ``ins_out.ready`` (with back-pressure),
    and feeds the monitors' transfers to the scoreboard, once per clock cycle."""

    def __init__(self, dut, config: DpaConfig, layouts, rng: np.random.Generator, idle: float = 0.0,
                 backpressure: float = 0.0):
        self.dut, self.config, self.rng = dut, config, rng
        self.req_layout, self.resp_layout, self.out_layout = layouts
        self.fmt = Format.for_org(config.org)
        self.mgmt = Source(CocotbPort(dut, "mgmt", self.req_layout), encode=encode_operation,
                           idle=idle_pattern(idle, rng))
        ready = ready_pattern(backpressure, rng)
        self.resp = Sink(CocotbPort(dut, "resp", self.resp_layout), ready=ready)
        self.ins = Sink(CocotbPort(dut, "ins_out", self.out_layout), ready=ready)
        self.scoreboard = DpaScoreboard(config)
        self.cycle = 0
        self.accept_cycle = 0

    async def wait_ready(self, limit: int) -> int:
        """Cycles until ``mgmt.ready`` rises (the free list is rebuilt after reset); returns at the next
        clock edge."""
        for n in range(limit):
            await ReadOnly()
            ready = int(self.dut.mgmt__ready.value)
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            if ready:
                return n
        raise TimeoutError(f"mgmt.ready stayed low for {limit} cycles")

    async def run(self, ops, max_cycles: int = 5_000_000, stop: Callable[[], bool] | None = None) -> int:
        """Issue ``ops`` in order, each once the previous one is answered; returns the number accepted.
        ``stop()`` true at the start of a cycle ends the run early (an operation may be in flight)."""
        dut = self.dut
        pending: deque[DpaOperation] = deque(ops)
        accepted, waiting, start = 0, False, self.cycle
        while (pending or waiting or self.mgmt.busy) and self.cycle - start < max_cycles:
            if stop is not None and stop():
                break
            if pending and not waiting and not self.mgmt.busy:
                self.mgmt.send(pending.popleft())
            self.mgmt.drive(None, self.cycle)
            self.resp.drive(None, self.cycle)
            self.ins.drive(None, self.cycle)
            await ReadOnly()
            op = self.mgmt.taken(None)
            if op is not None:
                self.scoreboard.accepted(op)
                self.accept_cycle = self.cycle
                accepted += 1
                waiting = True
            out = self.ins.sample(None)
            if out is not None:
                self.scoreboard.instruction(self.cycle, self.fmt.decode_instruction(out["ins"]), bool(out["sv"]))
            r = self.resp.sample(None)
            if r is not None:
                self.scoreboard.response(self.cycle, DpaResponse(Status(r["status"]), r["chunk"], r["offset"],
                                                                 r["free"]))
                waiting = False
            await RisingEdge(dut.clk)
            self.cycle += 1
        self.mgmt.clear()                       # stopped with an operation offered: it is not sent
        self.mgmt.drive(None, self.cycle)
        if self.cycle - start >= max_cycles:
            self.scoreboard.errors.append(f"cycle {self.cycle}: no progress within {max_cycles} cycles")
        return accepted
