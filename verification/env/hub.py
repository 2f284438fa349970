"""Decode attention through the RTL hub: the host's operations and the golden data side.

:class:`AttentionOnHub` is simulator-independent. It plans the host's operations (load the DPA
program, open the requests, then per decode step a RUN per (request, KV head) and an APPEND per
request, then close them) and holds everything outside the hub: the golden PIM channels that execute
every issued command with its data (:class:`~pimphony.model.hub.PimHub`: banks, GBuf, OBuf, GPR),
the K/V written into the physical chunks that DPA handed out (it mirrors the controller's
allocation with the golden model, which hands out the same chunks), the queries written into the
GPR, and the EPU: softmax when a QK^T phase has drained, the SV reduction when an SV phase has. The
attention outputs of every decode step are compared with the float64 reference by the test.

Hooks: ``before(op)`` when an operation is about to be offered, ``on_command(channel, cmd)`` for
every issued command in issue order, ``on_sync(sv)`` at every phase barrier, ``after(op)`` once the
operation is answered and the hub is idle.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

from pimphony.model.attention import Reference, decode_attention
from pimphony.model.config import ModelConfig
from pimphony.model.dpa import DpaConfig, DpaControllerModel, DpaOp, DpaOperation, load_program
from pimphony.model.hub import PimHub
from pimphony.model.isa import Command, Format, encode_command
from pimphony.model.numerics import scale_for
from pimphony.model.perf.hub import EPU_CYCLES
from pimphony.model.program import AttentionUnit
from pimphony.model.queue import Policy
from pimphony.model.timing import TimingChecker
from pimphony.scheduler.dpa import head_program, pair_placements
from pimphony.scheduler.golden import AttentionInputs
from pimphony.scheduler.lower import AttentionLowering
from pimphony.scheduler.partition import TokenCentricPartition, make_partition

from . import coverage
from .host import HostDriver, PlainJob
from .reset import hold_reset
from .signals import reader
from .stream import CocotbPort, ready_pattern


class HubAttention:
    """What both data sides share: the inputs, a golden hub the RTL's commands execute on (``data``) and
    one that runs the same program in order (``golden``), the outputs of both, and the checks."""

    def __init__(self, model: ModelConfig, org, lengths: list[int], steps: int, seed: int):
        self.model, self.steps, self.lengths = model, steps, list(lengths)
        self.inputs = AttentionInputs.random(model, [n + steps for n in lengths], seed)
        self.data = PimHub(org, scale_for(model.head_dim), obuf_entries=org.obuf_entries)
        self.golden = PimHub(org, scale_for(model.head_dim), obuf_entries=org.obuf_entries)
        self.outputs = np.zeros((steps + 1, *self.inputs.q.shape), dtype=np.float32)
        self.expected = np.zeros_like(self.outputs)
        self.errors: list[str] = []
        self.step = 0
        self._issued: list[tuple[int, ...]] = []

    def _query(self, r: int, h: int) -> np.ndarray:
        """The queries of request ``r``'s group ``h`` (float32, g x d)."""
        g = self.model.group
        return self.inputs.q[r, h * g:(h + 1) * g].astype(np.float32)

    def _load_query(self, hub: PimHub, unit: AttentionUnit) -> None:
        q = self._query(unit.request, unit.kv_head)
        w = hub.org.burst_elements
        hub.gpr.write(unit.query_gpr + np.arange(q.size // w), q.reshape(-1, w), "query load")

    def _reduce_into(self, hub: PimHub, outputs: np.ndarray, unit: AttentionUnit) -> None:
        out = hub.epu.reduce_block(hub.gpr, unit)
        if out is not None:
            g = self.model.group
            outputs[self.step, unit.request, unit.kv_head * g:(unit.kv_head + 1) * g] = out

    def on_command(self, channel: int, cmd) -> None:
        """Queue ``cmd`` for the data side, which executes the queue in issue order before anything reads
        its results (:meth:`drain`: at a barrier and when an operation ends)."""
        self._issued.append(encode_command(channel, cmd))

    def drain(self) -> None:
        """Execute the issued commands not executed yet, in issue order, on the data side's golden
        channels (the compiled path: each command an instruction to its one channel). Only the EPU
        reads what they write, and only at a barrier, so executing them there computes the same."""
        if self._issued:
            issued, self._issued = np.array(self._issued, dtype=np.int64), []
            self.data.execute_encoded(issued)

    # -- checking ------------------------------------------------------------------------------------

    def references(self) -> list[Reference]:
        """The float64 reference of every decode step."""
        q, k, v = self.inputs.q.astype(np.float32), self.inputs.k, self.inputs.v
        return [decode_attention(q, k, v, np.array(self.lengths) + s) for s in range(self.steps + 1)]

    def mismatches(self) -> int:
        """Output elements that differ (bitwise) from the golden model's in-order execution."""
        return int(np.count_nonzero(self.outputs.view(np.uint32) != self.expected.view(np.uint32)))

    def error_ratios(self) -> list[float]:
        """Per decode step: max over elements of |output - reference| / the derived bound (<= 1 passes)."""
        out = []
        for s, ref in enumerate(self.references()):
            err = np.abs(self.outputs[s] - ref.out).max(axis=2)
            out.append(float((err / ref.tolerance()).max()))
        return out


class AttentionOnHub(HubAttention):
    """A batch of requests decoding ``steps`` further tokens, one layer, through the hub.

    Parameters
    ----------
    model:
        One layer's attention shape (its KV heads are the controller's segments).
    config:
        The DPA controller's parameters the hub was built with.
    lengths:
        Prompt lengths; each request appends one token per decode step.
    steps:
        Decode steps after the first (each: an APPEND per request, then every pair again).
    seed:
        Seed of the random Q, K, V.
    """

    def __init__(self, model: ModelConfig, config: DpaConfig, lengths: list[int], steps: int, seed: int):
        if config.segments < model.kv_heads:
            raise ValueError(f"the controller holds {config.segments} segments; {model.name} needs {model.kv_heads}")
        super().__init__(model, config.org, lengths, steps, seed)
        org = config.org
        self.config = config
        self.part = TokenCentricPartition(org, model.head_dim)
        self.program = head_program(org, model.group, model.head_dim)
        self.lowering = AttentionLowering(self.part, model.group, org.obuf_entries)
        self.lowering.block_tokens = self.program.block_tokens
        self.mirror = DpaControllerModel(config)
        self._units: list[AttentionUnit] = []
        self._block = 0
        self._stage = "qk"

    # -- the plan ------------------------------------------------------------------------------------

    def operations(self) -> list[DpaOperation]:
        ops = load_program(self.program, Format.for_org(self.config.org))
        ops += [DpaOperation(DpaOp.OPEN, r, arg=n) for r, n in enumerate(self.lengths)]
        for s in range(self.steps + 1):
            if s:
                ops += [DpaOperation(DpaOp.APPEND, r, arg=1) for r in range(len(self.lengths))]
            ops += [DpaOperation(DpaOp.RUN, r, segment=h) for r in range(len(self.lengths))
                    for h in range(self.model.kv_heads)]
        return ops + [DpaOperation(DpaOp.CLOSE, r) for r in range(len(self.lengths))]

    # -- hooks ---------------------------------------------------------------------------------------

    def before(self, op: DpaOperation) -> None:
        _, emitted = self.mirror.step(op)
        if op.op != DpaOp.RUN:
            return
        r, h = op.request, op.segment
        place = pair_placements(self.part, self.mirror.alloc, r, self.model.kv_heads)[h]
        k, v = self.inputs.k[r, h, :place.length], self.inputs.v[r, h, :place.length]
        self._units = [step.unit for step in self.lowering.lower([place])[0].steps]
        self._block, self._stage = 0, "qk"
        for hub in (self.data, self.golden):
            self.part.store(hub.channels, place, k, v)
            self._load_query(hub, self._units[0])
        self.step = (place.length - self.lengths[r])
        self._run_golden(emitted)

    def _run_golden(self, emitted) -> None:
        """The RUN's instructions from the golden DPA model, in program order on the golden hub, with the
        EPU where the phase changes (the sequencer's barriers): the outputs the RTL must reproduce bit
        for bit, since the queues reorder only commands without a hazard between them."""
        block, stage, phase = 0, "qk", []
        for ins, sv in emitted:
            if sv and stage == "qk":
                self.golden.execute_all(phase)
                phase = []
                self.golden.epu.softmax_block(self.golden.gpr, self._units[block])
                stage = "sv"
            elif not sv and stage == "sv":
                self.golden.execute_all(phase)
                phase = []
                self._reduce_into(self.golden, self.expected, self._units[block])
                block, stage = block + 1, "qk"
            phase.append(ins)
        self.golden.execute_all(phase)
        if stage == "sv":
            self._reduce_into(self.golden, self.expected, self._units[block])

    def on_sync(self, sv: int) -> None:
        self.drain()
        if not self._units:
            return
        if sv == 0 and self._stage == "qk":
            self.data.epu.softmax_block(self.data.gpr, self._units[self._block])
            self._stage = "sv"
        elif sv == 1 and self._stage == "sv":
            self._reduce()
        elif not (sv == 1 and self._stage == "qk" and self._block == 0):   # the previous pair's last SV
            self.errors.append(f"barrier after phase {'SV' if sv else 'QK^T'} while expecting {self._stage}")

    def after(self, op: DpaOperation) -> None:
        self.drain()
        if op.op != DpaOp.RUN:
            return
        if self._stage == "sv":
            self._reduce()
        if self._block != len(self._units):
            self.errors.append(f"{op}: {self._block} of {len(self._units)} blocks ran")
        self._units = []

    def _reduce(self) -> None:
        self._reduce_into(self.data, self.outputs, self._units[self._block])
        self._block += 1
        self._stage = "qk"


class PlainAttentionOnHub(HubAttention):
    """Decode attention of a batch through the hub's plain instruction port (``ins``), lowered without
    DPA — head-first partitioning (HFP) by default, or TCP with contiguous placement.

    Per step of the program (one block of one pair) the host writes the group's queries into the GPR
    and sends the step's QK^T and SV instructions; golden channels execute every issued command; the
    EPU runs softmax at the barrier and the block's reduction when the step is over. The expected
    outputs are the golden hub's execution of the same program in order (bit for bit).
    """

    def __init__(self, model: ModelConfig, org, lengths: list[int], seed: int, partition: str = "hfp"):
        super().__init__(model, org, lengths, 0, seed)
        part = make_partition(partition, org, model.head_dim)
        placements = part.place(lengths, model.kv_heads)
        self.program = AttentionLowering(part, model.group, org.obuf_entries).lower(placements)[0]
        for p in placements:
            k, v = self.inputs.k[p.request, p.kv_head], self.inputs.v[p.request, p.kv_head]
            part.store(self.data.channels, p, k, v)
            part.store(self.golden.channels, p, k, v)
        g = model.group
        for (r, h), out in self.golden.run(self.program, self._query).items():
            self.expected[0, r, h * g:(h + 1) * g] = out
        self._unit: AttentionUnit | None = None
        self._stage = "qk"

    def operations(self) -> list[PlainJob]:
        return [PlainJob(i, tuple([(ins, False) for ins in step.qk] + [(ins, True) for ins in step.sv]))
                for i, step in enumerate(self.program.steps)]

    def before(self, job: PlainJob) -> None:
        self._unit, self._stage = self.program.steps[job.step].unit, "qk"
        self._load_query(self.data, self._unit)

    def on_sync(self, sv: int) -> None:
        self.drain()
        if sv == 0 and self._stage == "qk" and self._unit is not None:
            self.data.epu.softmax_block(self.data.gpr, self._unit)
            self._stage = "sv"
        elif not (sv == 1 and self._stage == "qk"):      # sv = 1 in "qk": the previous step's SV ended
            self.errors.append(f"barrier after phase {'SV' if sv else 'QK^T'} while expecting {self._stage}")

    def after(self, job: PlainJob) -> None:
        self.drain()
        if self._stage != "sv" or self._unit is None:
            self.errors.append(f"step {job.step} ended without its SV phase")
            return
        self._reduce_into(self.data, self.outputs, self._unit)
        self._unit = None


class HubLayouts(NamedTuple):
    """The payload layouts of an RTL :class:`pimphony.rtl.hub.PimHub`'s ports, as :class:`HubBench`
    takes them (the generated Verilog has only the packed bits)."""

    req: data.StructLayout
    resp: data.StructLayout
    out: data.StructLayout
    ins: data.StructLayout
    sync: data.StructLayout

    @classmethod
    def of(cls, hub) -> HubLayouts:
        return cls(hub.dpa.req_layout, hub.dpa.resp_layout, hub.queues[0].cmd_out.payload.shape(),
                   hub.sequencer.ins_in_layout, hub.sync.payload.shape())


async def reset_hub(dut, channels: int, policy: int) -> None:
    """Idle every input of a ``pim_hub``, set the issue policy, reset, and return one cycle after."""
    idle = {"mode": int(policy), "mgmt__valid": 0, "mgmt__payload": 0, "resp__ready": 0, "sync__ready": 0,
            "ins__valid": 0, "ins__payload": 0}
    await hold_reset(dut, idle | {f"cmd_out__{c}__ready": 0 for c in range(channels)})
    await RisingEdge(dut.clk)


class HubBench:
    """Drives a ``pim_hub`` at its pins with an :class:`AttentionOnHub` (cocotb): the host port, the
    EPU's barrier handshake (``epu_cycles`` after each barrier), ``ready`` on every channel's command
    output (low with probability ``backpressure``, each channel with its own seeded pattern); every
    transfer on a channel is executed by the data side and checked by that channel's timing checker."""

    def __init__(self, dut, work: AttentionOnHub | PlainAttentionOnHub, layouts: HubLayouts, timing,
                 dual_port: bool, rng: np.random.Generator, backpressure: float = 0.0, epu_cycles: int = EPU_CYCLES):
        self.dut, self.work = dut, work
        self.fmt = Format.for_org(work.data.org)
        self.channels = work.data.org.channels
        self.checkers = [TimingChecker(timing, dual_port) for _ in range(self.channels)]
        self.errors: list[str] = []
        self.responses: list = []
        self.commands = 0
        self._decoded: dict[int, Command] = {}
        self._mode = reader(dut.mode)
        idle = reader(dut.idle)
        self.driver = HostDriver(
            CocotbPort(dut, "mgmt", layouts.req), CocotbPort(dut, "ins", layouts.ins),
            CocotbPort(dut, "resp", layouts.resp), CocotbPort(dut, "sync", layouts.sync),
            [CocotbPort(dut, f"cmd_out__{c}", layouts.out) for c in range(self.channels)],
            idle=lambda ctx: idle() == 1, epu_cycles=epu_cycles,
            ready=[ready_pattern(backpressure, rng) for _ in range(self.channels)],
            encode_ins=lambda item: {"ins": self.fmt.encode_instruction(item[0]), "sv": item[1]})

    @property
    def cycle(self) -> int:
        return self.driver.cycle

    async def run(self, ops, max_cycles: int = 2_000_000) -> int:
        """Run ``ops`` (each after the previous one is finished and the hub idle); returns the cycles. An
        op is a :class:`DpaOperation` for the host port (finished when answered) or a
        :class:`PlainJob` for the ``ins`` port (finished when every instruction was taken)."""
        start = self.cycle
        try:
            await self.driver.run(None, ops, self, ReadOnly, lambda: RisingEdge(self.dut.clk), max_cycles)
        except TimeoutError as e:
            self.errors.append(str(e))
        self.driver.stop(None)
        return self.cycle - start

    def before(self, op) -> None:
        self.work.before(op)

    def after(self, op) -> None:
        self.work.after(op)

    def sync(self, payload: dict, cycle: int) -> None:
        coverage.sample_barrier(bool(payload["sv"]), Policy(self._mode()))
        self.work.on_sync(payload["sv"])

    def response(self, payload: dict, cycle: int) -> None:
        self.responses.append(payload)

    def command(self, channel: int, out: dict, cycle: int) -> None:
        """A command transferred on ``channel``: checked for timing and executed by the data side."""
        cmd = self._decode(out["cmd"])
        seq = -1 if out["refresh"] else out["seq"]
        if out["refresh"]:
            coverage.sample_issue(cmd.op, Policy(self._mode()), 0, 0, refresh=True)
        self.errors += self.checkers[channel].observe(cmd.op, cycle, seq)
        self.work.on_command(channel, cmd)
        self.commands += 1

    def _decode(self, word: int) -> Command:
        """:meth:`Format.decode_command <pimphony.model.isa.Format.decode_command>`, remembered per word: a
        workload issues a few thousand distinct commands hundreds of thousands of times."""
        cmd = self._decoded.get(word)
        if cmd is None:
            cmd = self._decoded[word] = self.fmt.decode_command(word)
        return cmd
