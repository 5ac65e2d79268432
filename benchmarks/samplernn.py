"""Golden SampleRNN generation that hardware can match: the sampler's accuracy and the MLP table's format.

Prints one JSON object:

- ``sampler``: the hardware sampler (:class:`wavefabric.model.sampler.GumbelSampler`, logits Q6.10) against
  ``softmax(logits / T)`` on logits of the seed configuration, for ``gumbel_bits`` 8, 10, 12 and T = 1 and
  0.5. Rows: teacher-forced fixed-point logits of a *trained-like* network (random weights, the output layer
  scaled by 3 so that distributions are peaky; the rows whose top probability is nearest 0.3, 0.6 and 0.9)
  and of the random-weight network (its median row). Per row: the total-variation distance of the empirical
  distribution of ``--draws`` draws (``tv_draws``), of the sampler's exact distribution for ideal random bits
  (``tv_exact``, :meth:`GumbelSampler.probabilities`: the bias of the finite table alone), of the same number
  of draws of NumPy's exact categorical sampler (``tv_numpy``, the noise floor), and of the draws against the
  exact distribution (``tv_draws_vs_exact``: xorshift32 behaving as ideal bits puts this at the floor).
- ``table``: fixed (folded table stored in each format) against float, teacher forced on 16,000 samples the
  float model generated: top-1 agreement and KL(float || fixed), mean and max, on the random-weight and
  trained-like networks; the table's largest magnitude and its saturated entries. ``exact`` is the unfolded
  reference (exact products); against it, each format's top-1 agreement and largest logit difference (in
  logit LSBs) isolate the table's rounding.
- ``generation``: the fixed-point model generating 1 s (16,000 samples) with the hardware sampler: time, and
  whether the sampler on its teacher-forced logits reproduces it bit for bit.

Usage: ``python benchmarks/samplernn.py [--draws N] [--seed S]`` (about two minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from report import publish, table

from wavefabric.model import samplernn
from wavefabric.model.fixed import QFormat, narrow
from wavefabric.model.sampler import GumbelSampler, seed_state, temperature_int

SAMPLES = 16000
#: Output-layer scale of the trained-like network: top probabilities from about 0.2 to 0.8 (median 0.4).
PEAKY_SCALE = 3.0
BITS = (8, 10, 12)
TEMPERATURES = (1.0, 0.5)
TOP_TARGETS = (0.3, 0.6, 0.9)
#: Table formats measured: the 16-bit ones the accelerator stores (with 12 to 14 fractional bits) and an
#: 18-bit one (a BRAM word in x18 mode) for comparison.
TABLE_FORMATS = (QFormat(16, 12), QFormat(16, 13), QFormat(16, 14), QFormat(18, 14))
CHUNK = 16384  # draws per vectorised noise call (16384 x 256 int64 = 32 MiB)


def network(config: samplernn.SampleRNNConfig, seed: int, scale: float) -> samplernn.SampleRNNParams:
    """Random weights; the MLP output layer's gain and bias times ``scale`` (sharper distributions)."""
    sd = samplernn.random_state_dict(config, seed)
    for name in ("sample_level_mlp.output.weight_g", "sample_level_mlp.output.bias"):
        sd[name] = sd[name] * np.float32(scale)
    return samplernn.SampleRNNParams.from_state_dict(config, sd)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def logit_rows(config, fixed_random, fixed_peaky, codes_random, codes_peaky) -> list[dict]:
    """The trained-like rows nearest each target top probability, and the random network's median row."""
    rows = []
    peaky = fixed_peaky.teacher_forced(codes_peaky)
    top = softmax(config.logits.dequantize(peaky)).max(axis=1)
    for target in TOP_TARGETS:
        i = int(np.argmin(np.abs(top - target)))
        rows.append({"network": "trained-like", "step": i, "logits": peaky[i]})
    flat = fixed_random.teacher_forced(codes_random[:2048])
    top = softmax(config.logits.dequantize(flat)).max(axis=1)
    i = int(np.argsort(top)[len(top) // 2])
    rows.append({"network": "random", "step": i, "logits": flat[i]})
    return rows


def sampler_figures(config, rows: list[dict], draws: int, seed: int) -> list[dict]:
    q = config.q_levels
    rng = np.random.default_rng(seed)
    results = []
    for t in TEMPERATURES:
        tq = temperature_int(t)
        targets = [softmax(config.logits.dequantize(row["logits"]) / t) for row in rows]
        floors = [tv(np.bincount(rng.choice(q, size=draws, p=p), minlength=q) / draws, p) for p in targets]
        for bits in BITS:
            sampler = GumbelSampler(config.logits, bits)
            counts = np.zeros((len(rows), q), dtype=np.int64)
            state = seed_state(seed)
            # One noise stream shared by the rows: each row's draws are still consecutive hardware draws.
            for start in range(0, draws, CHUNK):
                noise, state = sampler.noise(state, min(CHUNK, draws - start), q, tq)
                for r, row in enumerate(rows):
                    counts[r] += np.bincount(np.argmax(row["logits"] + noise, axis=1), minlength=q)
            for r, row in enumerate(rows):
                empirical, exact = counts[r] / draws, sampler.probabilities(row["logits"], tq)
                results.append({
                    "bits": bits, "temperature": t, "network": row["network"],
                    "top_p": round(float(targets[r].max()), 3),
                    "tv_draws": round(tv(empirical, targets[r]), 5), "tv_exact": round(tv(exact, targets[r]), 5),
                    "tv_numpy": round(floors[r], 5), "tv_draws_vs_exact": round(tv(empirical, exact), 5),
                })
    return results


def table_figures(config, params: dict, codes: dict) -> tuple[list[dict], float]:
    num = config.numerics
    emb = num.act.quantize(params["random"].mlp.embedding)
    w = params["random"].mlp.input.quantize(num)
    # Each exact product sum is below 2**53, so float64 is exact here.
    products = np.einsum("sc,dcj->jsd", emb.astype(np.float64), w.astype(np.float64)).astype(np.int64)
    floats = {name: samplernn.SampleRNNFloat(p) for name, p in params.items()}
    # The global formats with each table format (the per-layer choice is benchmarks/samplernn_formats.py's).
    exact_logits = {name: samplernn.SampleRNNFixed(p, False, samplernn.SampleRNNFormats.default(config))
                    .teacher_forced(codes[name]) for name, p in params.items()}
    results = []
    for fmt in (None, *TABLE_FORMATS):
        cfg = samplernn.SampleRNNConfig(table=fmt or config.table)
        row = {"table": "exact" if fmt is None else str(fmt)}
        if fmt is not None:
            unsaturated = narrow(products, num.acc_frac, QFormat(40, fmt.frac))
            row["saturated"] = int(np.sum(narrow(products, num.acc_frac, fmt) != unsaturated))
        for name, p in params.items():
            fixed = samplernn.SampleRNNFixed(samplernn.SampleRNNParams(cfg, p.tiers, p.mlp), fmt is not None,
                                             samplernn.SampleRNNFormats.default(cfg))
            error = samplernn.compare_teacher_forced(floats[name], fixed, codes[name])
            row[name] = {"top1": round(error.top1, 5), "kl_mean": float(f"{error.kl_mean:.3g}"),
                         "kl_max": float(f"{error.kl_max:.3g}")}
            if fmt is not None:
                # Against the exact products in the same fixed-point model: the table's rounding alone.
                folded, exact = fixed.teacher_forced(codes[name]), exact_logits[name]
                row[name]["exact_top1"] = float(np.mean(np.argmax(folded, axis=1) == np.argmax(exact, axis=1)))
                row[name]["exact_logit_lsb_max"] = int(np.abs(folded - exact).max())
        results.append(row)
    return results, float(np.abs(products).max()) * 2.0 ** -num.acc_frac


def markdown(result: dict) -> str:
    s = result["sampler"]
    lines = [f"**Sampler** (logits {s['logits']}, {s['draws']:,} draws per row and setting; TV = total-variation "
             "distance to softmax(logits / T); `exact` is the sampler's exact distribution for ideal random bits, "
             "`numpy` the same number of draws of NumPy's exact categorical sampler, the noise floor):", ""]
    rows = [{**r, "TV draws": f"{r['tv_draws']:.2%}", "TV exact": f"{r['tv_exact']:.3%}",
             "TV numpy": f"{r['tv_numpy']:.2%}", "draws vs exact": f"{r['tv_draws_vs_exact']:.2%}"}
            for r in s["rows"]]
    lines.append(table(rows, ["bits", "temperature", "network", "top_p", "TV draws", "TV exact", "TV numpy",
                              "draws vs exact"]))
    worst = {}
    for r in s["rows"]:
        key = (r["bits"], r["temperature"])
        worst[key] = max(worst.get(key, 0), r["tv_exact"])
    lines += ["", "Worst exact TV per setting (target <= 1%): " + ", ".join(
        f"{bits} bits T {t}: {v:.3%}" for (bits, t), v in sorted(worst.items())) + "."]
    tab = result["table"]
    lines += ["", f"**MLP table format**: fixed (table stored in each format) vs float, teacher forced on "
              f"{SAMPLES:,} samples; exact table entries reach {tab['max_abs']:.3f}.", ""]
    rows = []
    for r in tab["rows"]:
        row = {"table": r["table"], "saturated entries": r.get("saturated", "")}
        for name in ("random", "trained-like"):
            e = r[name]
            row[f"{name} top-1"] = f"{e['top1']:.2%}"
            row[f"{name} KL mean / max"] = f"{e['kl_mean']:.2e} / {e['kl_max']:.2e}"
            row[f"{name} vs exact"] = (f"{e['exact_top1']:.2%}, {e['exact_logit_lsb_max']} LSB"
                                       if "exact_top1" in e else "")
        rows.append(row)
    lines.append(table(rows, ["table", "saturated entries", "random top-1", "random KL mean / max", "random vs exact",
                              "trained-like top-1", "trained-like KL mean / max", "trained-like vs exact"]))
    g = result["generation"]
    lines += ["", f"**Generation**: fixed point with the hardware sampler (table {g['table']}, gumbel_bits "
              f"{g['gumbel_bits']}), {SAMPLES:,} samples in {g['seconds']:.2f} s; the sampler on its "
              f"teacher-forced logits reproduces it bit for bit: {g['bit_exact']}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1 << 20, help="sampler draws per row and setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = samplernn.SampleRNNConfig()
    params = {"random": network(config, args.seed, 1.0), "trained-like": network(config, args.seed, PEAKY_SCALE)}
    codes = {name: samplernn.SampleRNNFloat(p).generate(SAMPLES, args.seed) for name, p in params.items()}
    fixed = {name: samplernn.SampleRNNFixed(p) for name, p in params.items()}

    start = time.perf_counter()
    generated = fixed["random"].generate(SAMPLES, args.seed)
    seconds = time.perf_counter() - start
    replay, _ = fixed["random"].sampler.sample(fixed["random"].teacher_forced(generated), seed_state(args.seed),
                                               temperature_int(1.0))

    rows = logit_rows(config, fixed["random"], fixed["trained-like"], codes["random"], codes["trained-like"])
    table_rows, max_abs = table_figures(config, params, codes)
    result = {
        "sampler": {"logits": str(config.logits), "draws": args.draws,
                    "rows": sampler_figures(config, rows, args.draws, args.seed)},
        "table": {"max_abs": round(max_abs, 4), "rows": table_rows},
        "generation": {"table": str(config.table), "gumbel_bits": config.gumbel_bits, "samples": SAMPLES,
                       "seconds": round(seconds, 2), "bit_exact": bool(np.array_equal(replay, generated))},
    }
    publish("samplernn", "SampleRNN golden generation: sampler and MLP table format", result, markdown(result))


if __name__ == "__main__":
    main()
