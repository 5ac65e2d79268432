"""Worst-case error of every fixed-point kernel against float, at the default formats.

Exhaustive where the input space allows it (the sigmoid and tanh tables over all 65,536 inputs, the
reciprocal square root over every 24-bit mantissa); seeded random otherwise.
"""

import numpy as np
from report import publish, table

from wavefabric.model.kernels import Numerics, RsqrtFormat, gated_activation, gru_cell, quantize_weight_norm, rsqrt


def main() -> None:
    num = Numerics()
    rows = []
    x = np.arange(num.act.min_int, num.act.max_int + 1)
    for t in (num.sigmoid, num.tanh):
        err = np.abs(num.gate.dequantize(t(x)) - t.reference(num.act.dequantize(x)))
        rows.append({"kernel": f"{t.function} table ({t.in_fmt} -> {t.out_fmt}, {2**t.index_bits} segments)",
                     "inputs": "all 65,536", "metric": "max abs error", "value": float(err.max())})

    fmt = RsqrtFormat()
    ss = np.arange(1 << (fmt.mant_bits - 2), 1 << fmt.mant_bits, dtype=np.int64)
    y, k = rsqrt(ss, fmt)
    rel = np.abs(y * 2.0 ** -(fmt.frac + k / 2) * np.sqrt(ss.astype(np.float64)) - 1)
    rows.append({"kernel": f"rsqrt ({fmt.seed_bits}-bit seed, {fmt.newton_steps} Newton steps)",
                 "inputs": f"all {ss.size:,} mantissas", "metric": "max relative error", "value": float(rel.max())})

    rng = np.random.default_rng(0)
    a, b = (rng.integers(num.act.min_int, num.act.max_int + 1, 1_000_000) for _ in range(2))
    ref = np.tanh(num.act.dequantize(a)) / (1 + np.exp(-num.act.dequantize(b)))
    err = np.abs(num.act.dequantize(gated_activation(a, b, num)) - ref)
    rows.append({"kernel": "gated activation tanh(a) * sigmoid(b)", "inputs": "1,000,000 random",
                 "metric": "max abs error", "value": float(err.max())})

    v = rng.normal(0, 1, (512, 192)) * rng.uniform(0.01, 10, (512, 1))
    g = rng.uniform(0.1, 1.9, (512, 1))
    w_ref = g * v / np.linalg.norm(v, axis=1, keepdims=True)
    w = num.weight.dequantize(quantize_weight_norm(g, v, num))
    err = np.abs(w - w_ref) / num.weight.lsb
    rows.append({"kernel": f"weight norm g v / norm(v) into {num.weight} (512 rows of 192)",
                 "inputs": "random rows, norms 0.1-1400", "metric": "max abs error (output LSBs)",
                 "value": float(err.max())})

    n = 64
    s = 1 / np.sqrt(n)
    params = [rng.uniform(-s, s, (3 * n, n)), rng.uniform(-s, s, (3 * n, n)), rng.uniform(-s, s, 3 * n),
              rng.uniform(-s, s, 3 * n)]
    q_params = [num.weight.quantize(params[0]), num.weight.quantize(params[1]), num.act.quantize(params[2]),
                num.act.quantize(params[3])]
    h, h_q, worst = np.zeros(n), np.zeros(n, dtype=np.int64), {}
    for step in range(1, 101):
        xs = rng.uniform(-2, 2, n)
        gi, gh = params[0] @ xs + params[2], params[1] @ h + params[3]
        r, z = (1 / (1 + np.exp(-(gi[i * n:(i + 1) * n] + gh[i * n:(i + 1) * n]))) for i in (0, 1))
        h = (1 - z) * np.tanh(gi[2 * n:] + r * gh[2 * n:]) + z * h
        h_q = gru_cell(num.act.quantize(xs), h_q, *q_params, num)
        if step in (1, 100):
            worst[step] = float(np.max(np.abs(num.act.dequantize(h_q) - h)))
    for step, value in worst.items():
        rows.append({"kernel": "GRU cell 64 -> 64 (float carried separately)", "inputs": f"after {step} step(s)",
                     "metric": "max abs error of h", "value": value})

    for row in rows:
        row["value"] = float(f"{row['value']:.3g}")
    publish("kernel_errors", "Kernel errors against float (default formats)", {"kernels": rows},
            table(rows, ["kernel", "inputs", "metric", "value"]))


if __name__ == "__main__":
    main()
