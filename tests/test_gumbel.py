"""rtl/gumbel.py: the hardware sampler against model/sampler.py."""

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.sampler import GumbelSampler as GumbelModel
from wavefabric.model.sampler import seed_state, temperature_int
from wavefabric.rtl.gumbel import GumbelSampler
from wavefabric.sim.streams import run_simulation, vcd_hint

LOGITS = QFormat(16, 10)


def run_sampler(logits: np.ndarray, state: int, tq: int, bits: int, gaps: np.ndarray) -> tuple[list[int], list[int]]:
    """Feed each row of ``logits`` (levels in order, ``gaps[i]`` idle cycles before logit i); return the codes and
    the cycle of each code after its last logit."""
    n, q = logits.shape
    dut = GumbelSampler(LOGITS, q, bits)
    codes, delays = [], []

    async def bench(ctx):
        cycle, last_cycles = 0, []

        async def tick():
            nonlocal cycle
            await ctx.tick()
            cycle += 1
            code = ctx.get(dut.code)
            if code["valid"]:
                codes.append(code["code"])
                delays.append(cycle - last_cycles[len(codes) - 1])

        ctx.set(dut.seed, state)
        ctx.set(dut.load, 1)
        ctx.set(dut.temperature, tq)
        await ctx.tick()
        ctx.set(dut.load, 0)
        for i, value in enumerate(logits.reshape(-1)):
            ctx.set(dut.logit.valid, 0)
            for _ in range(int(gaps[i])):
                await tick()
            ctx.set(dut.logit, {"valid": 1, "index": i % q, "value": int(value)})
            if i % q == q - 1:
                last_cycles.append(cycle)
            await tick()
        ctx.set(dut.logit.valid, 0)
        for _ in range(GumbelSampler.latency + 1):
            await tick()

    run_simulation(dut, [bench], name="gumbel")
    return codes, delays


@pytest.mark.parametrize("seed, q, bits, temperature, scale", [
    (0, 16, 10, 1.0, 3.0), (1, 2, 4, 0.5, 1.0), (2, 256, 10, 1.0, 4.0), (3, 8, 16, 15.99, 0.1),
    (4, 5, 8, 1 / 4096, 30.0),
])
def test_sampler_matches_model(seed, q, bits, temperature, scale):
    rng = np.random.default_rng(seed)
    n = 6 if q > 16 else 12
    logits = LOGITS.quantize(rng.normal(0, scale, (n, q)))
    logits[0] = LOGITS.max_int  # ties everywhere: the first level wins unless noise separates them
    logits[1] = LOGITS.min_int
    state, tq = seed_state(seed), temperature_int(temperature)
    gaps = rng.geometric(0.6, logits.size) - 1 if seed % 2 else np.zeros(logits.size, int)
    codes, delays = run_sampler(logits, state, tq, bits, gaps)
    expected, _ = GumbelModel(LOGITS, bits).sample(logits, state, tq)
    assert codes == expected.tolist(), f"seed {seed}; {vcd_hint('gumbel')}"
    assert set(delays) == {GumbelSampler.latency}
