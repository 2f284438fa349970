"""The host's side of the RTL hub (:class:`pimphony.rtl.hub.PimHub`), one driver for both simulator
bindings: :class:`HostDriver` offers the host's operations one after another (OPEN, LOAD, RUN,
APPEND, CLOSE on ``mgmt``, or a :class:`PlainJob`'s instructions on ``ins``), acknowledges the phase
barriers on ``sync`` as the EPU does (:class:`~.stream.EpuBarrier`), takes every channel's issued
commands (with optional back-pressure) and the answers on ``resp``.

An operation is finished in the first cycle in which it has been answered (a plain job: every
instruction was taken in an earlier cycle) and the hub reports ``idle``; the next one is offered
from the following cycle. A :class:`HostListener` sees the run as the host and the channels would.
The amaranth.sim bench (:func:`pimphony.verification.sim.simulate_hub`) and the cocotb bench
(:class:`pimphony.verification.env.hub.HubBench`) differ only in their binding: how a port is read
and written, how the signals settle and how a clock cycle passes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pimphony.model.dpa import DpaOperation
from pimphony.model.isa import Instruction
from pimphony.model.perf.hub import EPU_CYCLES

from .stream import CocotbPort, EpuBarrier, SimPort, Sink, Source


@dataclass(frozen=True)
class PlainJob:
    """One step of a plain program for the hub's ``ins`` port: its instructions with their phase."""

    step: int
    instructions: tuple[tuple[Instruction, bool], ...]


def encode_operation(op: DpaOperation) -> dict[str, int]:
    """A host operation as the fields of the ``mgmt`` payload."""
    return {**vars(op), "op": int(op.op)}


class HostListener(Protocol):
    """What a :class:`HostDriver` reports, in simulation order. Payloads are as the binding reads them
    (an amaranth.sim ``data.Struct`` view, a cocotb field mapping)."""

    def before(self, op: DpaOperation | PlainJob) -> None:
        """``op`` is about to be offered."""

    def command(self, channel: int, payload: Any, cycle: int) -> None:
        """``channel`` issued a command (a refresh included) in ``cycle``."""

    def sync(self, payload: Any, cycle: int) -> None:
        """A phase barrier was acknowledged in ``cycle``."""

    def response(self, payload: Any, cycle: int) -> None:
        """The hub answered in ``cycle``."""

    def after(self, op: DpaOperation | PlainJob) -> None:
        """``op`` is finished: answered and the hub idle."""


Port = SimPort | CocotbPort


class HostDriver:
    """Drives a hub's host port, plain instruction port, barrier and channel outputs.

    Parameters
    ----------
    mgmt, ins, resp, sync : port bindings of the hub's ``mgmt``, ``ins``, ``resp`` and ``sync`` streams.
    channels : port bindings of every channel's ``cmd_out``.
    idle : reads the hub's ``idle`` output (given the simulator context).
    epu_cycles : cycles from a barrier's offer to its acknowledgement.
    ready : per channel, whether it takes a command in a cycle (None: always); each channel's own
        back-pressure pattern.
    encode_ins : a plain job's (instruction, phase) pair as the ``ins`` payload.
    """

    def __init__(self, mgmt: Port, ins: Port, resp: Port, sync: Port, channels: list[Port],
                 idle: Callable[[Any], bool], epu_cycles: int = EPU_CYCLES,
                 ready: list[Callable[[int], bool] | None] | None = None,
                 encode_ins: Callable[[tuple[Instruction, bool]], Any] | None = None):
        self.mgmt = Source(mgmt, encode=encode_operation)
        self.ins = Source(ins, encode=encode_ins)
        self.resp = Sink(resp, hold=True)
        self.barrier = EpuBarrier(epu_cycles)
        self.sync_port = sync
        self.sync = Sink(sync, ready=lambda cycle: self.barrier.ready, hold=True)    # drives sync.ready
        self.channels = [Sink(port, ready=pattern, hold=True)
                         for port, pattern in zip(channels, ready or [None] * len(channels), strict=True)]
        self.idle = idle
        self.cycle = 0

    def _drive(self, ctx) -> None:
        for sink in (*self.channels, self.resp, self.sync):
            sink.drive(ctx, self.cycle)
        self.mgmt.drive(ctx, self.cycle)
        self.ins.drive(ctx, self.cycle)

    def _sample(self, ctx, listener: HostListener) -> bool:
        """The settled cycle's transfers, reported; returns whether an answer came."""
        self.mgmt.taken(ctx)
        self.ins.taken(ctx)
        for c, sink in enumerate(self.channels):
            out = sink.sample(ctx)
            if out is not None:
                listener.command(c, out, self.cycle)
        if self.barrier.step(self.sync_port.get_valid(ctx)):          # offered and taken
            listener.sync(self.sync_port.get_payload(ctx), self.cycle)
        r = self.resp.sample(ctx)
        if r is not None:
            listener.response(r, self.cycle)
        return r is not None

    async def run(self, ctx, ops: Iterable[DpaOperation | PlainJob], listener: HostListener,
                  settle: Callable[[], Awaitable[Any]], tick: Callable[[], Awaitable[Any]],
                  max_cycles: int = 10_000_000) -> list[tuple[int, int]]:
        """Run ``ops`` in order; returns per operation the cycle it was first offered and the cycle
        after it finished. ``settle`` waits until the cycle's signals are settled (amaranth.sim: at
        once; cocotb: ``ReadOnly``), ``tick`` for the next clock edge. Raises :class:`TimeoutError`
        when an operation makes no progress for ``max_cycles`` cycles (its inputs stay offered)."""
        spans = []
        for op in ops:
            begun = self.cycle
            listener.before(op)
            answered = isinstance(op, PlainJob)
            for item in op.instructions if answered else (op,):
                (self.ins if answered else self.mgmt).send(item)
            while True:
                if self.cycle - begun > max_cycles:
                    raise TimeoutError(f"{op} did not finish within {max_cycles} cycles")
                self._drive(ctx)
                await settle()
                offering = self.ins.busy            # a plain job is done from the cycle after its last take
                answered |= self._sample(ctx, listener)
                done = answered and not offering and self.idle(ctx)
                await tick()
                self.cycle += 1
                if done:
                    break
            spans.append((begun, self.cycle))
            listener.after(op)
        return spans

    def stop(self, ctx) -> None:
        """Lower ``valid`` on the host ports (after a run, or one stopped early)."""
        self.mgmt.clear()
        self.ins.clear()
        self.mgmt.drive(ctx, self.cycle)
        self.ins.drive(ctx, self.cycle)
