"""Hardware in the loop: a serving run's allocation calls replayed through the DPA controller RTL.

:func:`pimphony.model.perf.serving.serve` (with ``log=True`` and a :class:`DpaConfig`) records every
OPEN, APPEND and CLOSE it makes, with the status and the free-chunk count its golden allocator answered.
:func:`replay` turns that log into management operations and adds, after every call that took chunks, a
TRANSLATE of the first token of each newly mapped virtual chunk of every segment (K and V), so the
chunk ids themselves are compared, not only their count. The operations run through the
:class:`~pimphony.rtl.dpa.DpaController` in amaranth.sim and through the golden
:class:`~pimphony.model.dpa.DpaControllerModel`; every response (status, chunk, offset, free chunks)
must be equal, and the management responses must equal what the serving run logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimphony.model.dpa import DpaConfig, DpaControllerModel, DpaOp, DpaOperation, DpaResponse
from pimphony.model.kvcache import Status


@dataclass
class ReplayResult:
    operations: int
    translations: int
    mismatches: list[str]
    cycles: int
    responses: list[DpaResponse] | None = None


def operations(log: list[tuple[str, int, int, Status, int]], config: DpaConfig) -> list[DpaOperation]:
    """The log's calls as DPA operations, each call that took chunks followed by TRANSLATEs of them."""
    shadow = DpaControllerModel(config)
    ops: list[DpaOperation] = []
    for op, rid, tokens, _, _ in log:
        operation = DpaOperation(DpaOp[op.upper()], request=rid, arg=tokens)
        before = shadow.alloc.requests.get(rid)
        had = (before.k_chunks, before.v_chunks) if before is not None else (0, 0)
        ops.append(operation)
        response, _ = shadow.step(operation)
        req = shadow.alloc.requests.get(rid)
        if response.status != Status.OK or req is None or op == "close":
            continue
        for kv, (old, new, per) in enumerate(((had[0], req.k_chunks, config.layout.k_tokens),
                                               (had[1], req.v_chunks, config.layout.v_tokens))):
            for virtual in range(old, new):
                token = virtual * per
                if token < req.length:
                    ops += [DpaOperation(DpaOp.TRANSLATE, request=rid, segment=s, kv=kv, arg=token)
                            for s in range(config.segments)]
    return ops


def replay(log: list[tuple[str, int, int, Status, int]], config: DpaConfig) -> ReplayResult:
    """Run the log through the RTL and the golden controller; list every difference (:func:`compare`)."""
    from pimphony.rtl.dpa import DpaController
    from pimphony.verification.sim import simulate_dpa

    ops = operations(log, config)
    golden = DpaControllerModel(config)
    expected = [golden.step(op)[0] for op in ops]
    rtl = simulate_dpa(DpaController(config), ops)
    return ReplayResult(len(ops), sum(op.op == DpaOp.TRANSLATE for op in ops),
                        compare(log, ops, expected, rtl.responses), sum(rtl.cycles), rtl.responses)


def compare(log: list[tuple[str, int, int, Status, int]], ops: list[DpaOperation], expected: list[DpaResponse],
            responses: list[DpaResponse]) -> list[str]:
    """Every response that differs from the golden controller's, and every management response whose status
    or free count differs from what the serving run logged."""
    mismatches = []
    logged = iter(log)
    for i, (op, want, got) in enumerate(zip(ops, expected, responses, strict=True)):
        if want != got:
            mismatches.append(f"operation {i} ({op.op.name} request {op.request}): golden {want}, RTL {got}")
        if op.op != DpaOp.TRANSLATE:
            _, rid, _, status, free = next(logged)
            if (status, free) != (got.status, got.free):
                mismatches.append(f"operation {i} ({op.op.name} request {rid}): serving run {status.name} with "
                                  f"{free} free, RTL {got.status.name} with {got.free} free")
    return mismatches
