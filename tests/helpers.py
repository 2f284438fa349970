"""Small builders shared by the tests."""

from amaranth.sim import Simulator

from pimphony.model.config import ModelConfig


def model(heads: int, kv_heads: int, head_dim: int, name: str = "test-model") -> ModelConfig:
    """A validated one-layer model of the given attention shape."""
    return ModelConfig.from_mapping(
        {"name": name, "values": {"layers": 1, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
                                  "context": 1 << 20}}, "tests")


def port(dut, path: str):
    """``dut``'s port at ``path``, e.g. ``push.valid`` or ``query[1]``."""
    value = dut
    for part in path.split("."):
        name, _, index = part.partition("[")
        value = getattr(value, name)
        if index:
            value = value[int(index.rstrip("]"))]
    return value


def run_cycles(dut, drive: dict, sample: dict, cycles: int) -> dict[str, str]:
    """Each cycle: set every port ``drive[path]`` (a string of digits or a function of the cycle), then
    record ``sample[name](ctx)`` as one character; return the recorded strings."""
    seen = {name: [] for name in sample}

    async def bench(ctx):
        for c in range(cycles):
            for path, value in drive.items():
                v = value(c) if callable(value) else int(value[c])
                ctx.set(port(dut, path), v)
            for name, probe in sample.items():
                seen[name].append(str(probe(ctx)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return {name: "".join(v) for name, v in seen.items()}
