"""``PimHub``: the orchestrator's top — DPA controller -> sequencer / multicast -> one DCS queue per channel.

The hub turns host operations into timed channel commands: the :class:`~pimphony.rtl.dpa.DpaController`
expands DPA programs into physical module instructions (plain instructions, e.g. a head-first
program, come from the host on ``ins`` instead), the :class:`Sequencer` unrolls each
instruction's op-size and multicasts it to the channels of its mask (as
:func:`pimphony.model.isa.unroll` defines, RD-OUT gather included), and a
:class:`~pimphony.rtl.dcs.DcsQueue` per channel issues the commands under the timing rules. The data
path (GPR, GBuf and bank contents) lives in the channels and the HUB's GPR file outside this block;
the hub stops at every phase boundary of a block (QK^T -> SV, SV -> next block) until every queue
has drained and the EPU has acknowledged on ``sync``.
"""

from __future__ import annotations

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from pimphony.model.config import TimingPreset
from pimphony.model.dpa import DpaConfig
from pimphony.model.isa import ADVANCING, Format, Opcode
from pimphony.model.queue import QueueConfig

from .dcs import DcsQueue
from .dpa import DpaController
from .layouts import OpcodeShape, command_layout, instruction_layout, opcode_in


class Sequencer(wiring.Component):
    """Instruction sequencer and multicast interconnect.

    Ports
    -----
    ins_in : In(stream of {ins, sv})
        Module instructions in program order (``sv``: the instruction belongs to the SV phase).
        ``ready`` is high when no instruction is held or the held one finishes in this cycle.
    cmd_out : Out(stream of command).array(channels)
        Repetition ``i`` of the held instruction is offered to every channel of its mask at once;
        each channel takes it when ready, and the next repetition starts when all have taken it.
        Fields in ``ADVANCING`` advance by ``i``; an RD-OUT to the channel of rank ``k`` in the mask
        writes GPR ``gpr + k * op_size + i``.
    drained : In(channels)
        Per channel: its queue is empty and its commands have completed.
    sync : Out(stream of {sv})
        Before the first instruction of a new phase the sequencer waits until every queue has
        drained, then offers ``sv`` = the phase that ended; the EPU takes it (``ready``) when its
        work between the phases is done, and the sequencer proceeds.
    idle : Out(1)
        No instruction is held.
    """

    def __init__(self, fmt: Format):
        self.fmt = fmt
        self.ins_layout = instruction_layout(fmt)
        self.cmd_layout = command_layout(fmt)
        self.ins_in_layout = data.StructLayout({"ins": self.ins_layout, "sv": 1})
        super().__init__({
            "ins_in": In(stream.Signature(self.ins_in_layout)),
            "cmd_out": Out(stream.Signature(self.cmd_layout)).array(fmt.channels),
            "drained": In(fmt.channels),
            "sync": Out(stream.Signature(data.StructLayout({"sv": 1}))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, n = self.fmt, self.fmt.channels
        cur = Signal(self.ins_layout)
        cur_sv, held, started, phase = Signal(), Signal(), Signal(), Signal()
        rep = Signal(fmt.op_size_bits + 1)
        taken = Signal(n)
        need_sync = held & started & (cur_sv != phase)
        issuing = held & ~need_sync
        size = cur.op_size + 1
        op = cur.op

        m.d.comb += [self.sync.valid.eq(need_sync & (self.drained == (1 << n) - 1)),
                     self.sync.payload.sv.eq(phase), self.idle.eq(~held)]
        with m.If(self.sync.valid & self.sync.ready):
            m.d.sync += phase.eq(cur_sv)

        def advances(name):
            return opcode_in(op, [o for o in Opcode if name in ADVANCING[o]])

        fired = Signal(n)
        rank = Const(0, 1)
        for c in range(n):
            port = self.cmd_out[c]
            p = port.payload
            m.d.comb += [port.valid.eq(issuing & cur.ch_mask[c] & ~taken[c]),
                         p.op.eq(op), p.row.eq(cur.row),
                         p.col.eq(cur.col + Mux(advances("col"), rep, 0)),
                         p.gbuf.eq(cur.gbuf + Mux(advances("gbuf"), rep, 0)),
                         p.obuf.eq(cur.obuf + Mux(advances("obuf"), rep, 0)),
                         p.gpr.eq(cur.gpr + Mux(advances("gpr"), rep, 0)
                                  + Mux(op == OpcodeShape.RD_OUT, rank * size, 0)),
                         fired[c].eq(port.valid & port.ready)]
            rank = rank + cur.ch_mask[c]
        rep_done = issuing & (((taken | fired) & cur.ch_mask) == cur.ch_mask)
        last = rep_done & (rep + 1 == size)
        with m.If(rep_done):
            m.d.sync += [taken.eq(0), rep.eq(rep + 1)]
        with m.Elif(issuing):
            m.d.sync += taken.eq(taken | fired)
        with m.If(issuing):
            m.d.sync += started.eq(1)
        m.d.comb += self.ins_in.ready.eq(~held | last)
        with m.If(self.ins_in.valid & self.ins_in.ready):
            m.d.sync += [cur.eq(self.ins_in.payload.ins), cur_sv.eq(self.ins_in.payload.sv), held.eq(1),
                         rep.eq(0), taken.eq(0)]
            with m.If(~started & ~held):
                m.d.sync += phase.eq(self.ins_in.payload.sv)
        with m.Elif(last):
            m.d.sync += held.eq(0)
        return m


class PimHub(wiring.Component):
    """The PIM module's orchestrator: DPA controller, sequencer and ``channels`` DCS queues.

    Ports
    -----
    mgmt, resp :
        The DPA controller's host port (:class:`~pimphony.rtl.dpa.DpaController`).
    ins : In(stream of {ins, sv})
        Plain module instructions from the host, in program order (``sv``: the instruction belongs to
        the SV phase), for programs the DPA controller does not run (head-first partitioning). The
        DPA controller's instructions have priority: ``ready`` is low while it offers one, so send
        plain instructions only outside a RUN.
    sync :
        The sequencer's phase barrier (:class:`Sequencer`): the EPU runs between the phases.
    cmd_out : Out(stream).array(channels)
        Each channel's issued commands (:class:`~pimphony.rtl.dcs.DcsQueue` ``cmd_out``).
    mode : In(2)
        The issue policy of every queue (:class:`~pimphony.model.queue.Policy`).
    idle : Out(1)
        The sequencer holds nothing and every queue has drained (after RUN's response: the run is over).

    Parameters
    ----------
    dpa:
        The DPA controller's parameters; its module organisation sets the channel count.
    timing, queue:
        The DCS queues' timing preset and configuration.
    """

    def __init__(self, dpa: DpaConfig, timing: TimingPreset, queue: QueueConfig):
        self.queue_module: str | None = None
        """When set, each channel's queue elaborates as an instance of the Verilog module of that name (a
        black box: :func:`black_box`) instead of a submodule. Set only while
        :func:`pimphony.rtl.build.to_verilog` converts the hub, which then converts one queue alone."""
        self.dpa = DpaController(dpa)
        self.fmt = self.dpa.fmt
        self.sequencer = Sequencer(self.fmt)
        self.queues = [DcsQueue(self.fmt, timing, queue) for _ in range(self.fmt.channels)]
        dpa_ports, queue_ports = self.dpa.signature.members, self.queues[0].signature.members
        super().__init__({
            "mgmt": dpa_ports["mgmt"],
            "resp": dpa_ports["resp"],
            "ins": In(stream.Signature(self.sequencer.ins_in_layout)),
            "sync": self.sequencer.signature.members["sync"],
            "cmd_out": Out(queue_ports["cmd_out"].signature).array(self.fmt.channels),
            "mode": In(2),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dpa = self.dpa
        m.submodules.sequencer = seq = self.sequencer
        connect(m, flipped(self.mgmt), self.dpa.mgmt)
        connect(m, self.dpa.resp, flipped(self.resp))
        dpa_ins = self.dpa.ins_out
        with m.If(dpa_ins.valid):
            m.d.comb += [seq.ins_in.valid.eq(1), seq.ins_in.payload.eq(dpa_ins.payload),
                         dpa_ins.ready.eq(seq.ins_in.ready)]
        with m.Else():
            m.d.comb += [seq.ins_in.valid.eq(self.ins.valid), seq.ins_in.payload.eq(self.ins.payload),
                         self.ins.ready.eq(seq.ins_in.ready)]
        connect(m, seq.sync, flipped(self.sync))
        drained = []
        for c, q in enumerate(self.queues):
            m.submodules[f"queue{c}"] = q if self.queue_module is None else black_box(self.queue_module, q)
            connect(m, seq.cmd_out[c], q.cmd_in)
            connect(m, q.cmd_out, flipped(self.cmd_out[c]))
            m.d.comb += q.mode.eq(self.mode)
            drained.append(q.idle)
        m.d.comb += [seq.drained.eq(Cat(drained)), self.idle.eq(seq.idle & Cat(drained).all())]
        return m


def black_box(module: str, component: wiring.Component) -> Instance:
    """An instance of Verilog module ``module`` connected to ``component``'s ports in its place (the names
    Amaranth gives the ports of ``component`` converted alone: members joined by ``__``, and ``clk``,
    ``rst`` of its sync domain)."""
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in component.signature.flatten(component):
        ports[("i_" if member.flow == In else "o_") + "__".join(map(str, path))] = value
    return Instance(module, **ports)
