"""Issue 2 targets: NumPy model speed and fixed-point error against float, at the default formats.

- SampleRNN seed config (frame sizes 16 4, 2 GRU layers, dim 64): float generation of 1 s (16,000 samples);
  fixed-point top-1 agreement and KL(float || fixed) of the next-sample distribution, teacher forced.
- ParallelWaveGAN ljspeech v1: float forward for 1 s (22,050 samples); fixed-point waveform SNR against float.

Random weights (seeded), as no trained checkpoint can be downloaded here.
"""

import argparse
import time

import numpy as np
from report import publish, table

from wavefabric.model import pwg, samplernn


def best_of(runs: int, fn):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (the best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = samplernn.SampleRNNConfig()
    params = samplernn.SampleRNNParams.from_state_dict(config, samplernn.random_state_dict(config, args.seed))
    float_model, fixed_model = samplernn.SampleRNNFloat(params), samplernn.SampleRNNFixed(params)
    srnn_float_s, codes = best_of(args.runs, lambda: float_model.generate(16000, args.seed))
    srnn_fixed_s, _ = best_of(1, lambda: fixed_model.generate(16000, args.seed))
    error = samplernn.compare_teacher_forced(float_model, fixed_model, codes)

    pconfig = pwg.PWGConfig()
    generator = pwg.from_state_dict(pconfig, pwg.random_state_dict(pconfig, args.seed))
    frames = -(-22050 // pconfig.hop_size)
    mel = np.random.default_rng(args.seed).normal(0, 1, (frames, pconfig.aux_channels))
    pwg_float_s, ref = best_of(args.runs, lambda: generator.inference(mel, seed=args.seed))
    pwg_fixed_s, fixed = best_of(1, lambda: pwg.PWGFixed(generator).inference(mel, seed=args.seed))
    snr = pwg.snr_db(ref, fixed)

    num, pnum = config.numerics, pconfig.numerics
    result = {
        "samplernn": {"config": "frame_sizes 16 4, n_rnn 2, dim 64, q 256", "samples": 16000,
                      "float_generate_s": round(srnn_float_s, 2), "fixed_generate_s": round(srnn_fixed_s, 2),
                      "formats": f"act {num.act}, weight {num.weight}, gate {num.gate}",
                      "teacher_forced_top1": round(error.top1, 4), "kl_mean_nats": float(f"{error.kl_mean:.3g}"),
                      "kl_max_nats": float(f"{error.kl_max:.3g}")},
        "pwg": {"config": "ljspeech v1", "samples": int(ref.shape[0]), "mel_frames": frames,
                "float_forward_s": round(pwg_float_s, 2), "fixed_forward_s": round(pwg_fixed_s, 2),
                "formats": f"act {pnum.act}, weight {pnum.weight}, gate {pnum.gate}", "snr_db": round(snr, 1)},
    }
    rows = [
        {"what": "SampleRNN float generation, 1 s (16,000 samples)", "target": "<= 10 s",
         "measured": f"{srnn_float_s:.2f} s"},
        {"what": "SampleRNN fixed-point generation, 1 s", "target": "", "measured": f"{srnn_fixed_s:.2f} s"},
        {"what": "SampleRNN fixed vs float, teacher forced on 16,000 samples: top-1 agreement", "target": "",
         "measured": f"{error.top1:.2%}"},
        {"what": "SampleRNN fixed vs float: KL(float \\|\\| fixed), mean / max over steps", "target": "",
         "measured": f"{error.kl_mean:.2e} / {error.kl_max:.2e} nats"},
        {"what": f"PWG float forward, 1 s ({ref.shape[0]:,} samples, {frames} mel frames)", "target": "<= 10 s",
         "measured": f"{pwg_float_s:.2f} s"},
        {"what": "PWG fixed-point forward, same input", "target": "", "measured": f"{pwg_fixed_s:.2f} s"},
        {"what": "PWG fixed vs float waveform SNR", "target": ">= 30 dB", "measured": f"{snr:.1f} dB"},
    ]
    note = (f"\n\nRandom weights (seed {args.seed}); SampleRNN formats {result['samplernn']['formats']}; "
            f"PWG formats {result['pwg']['formats']}. Times are the best of {args.runs} runs.")
    publish("models", "NumPy models: speed and fixed-point error", result,
            table(rows, ["what", "target", "measured"]) + note)


if __name__ == "__main__":
    main()
