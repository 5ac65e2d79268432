"""ParallelWaveGAN number formats: fixed-vs-float waveform SNR with the uniform formats and with the formats chosen
for each generator (``model/pwg_profile.py``), at ljspeech sizes, on trained-like and on random weights.

Prints one JSON object:

- ``trained_like``: generators of ``trained_like_state_dict`` (random weights scaled to a trained network's
  measured ranges: first_conv's weights 4.55, conv_in's output 29.6, the aux terms 26.6, the skip sum 96, the
  waveform 0.95), seeds 0 to ``--seeds - 1``; the mel is a built-in calibration-like mel of another seed than the
  calibration's (1 s, 87 frames), so the formats are tested on input they were not chosen on. Target: SNR >= 45
  dB with the chosen formats;
- ``random``: ``random_state_dict`` generators, seeds 0-7, on the N(0, 1) mels of ``benchmarks/models.py`` (1 s).
  Target: not worse than the uniform formats;
- per case the values that saturate in the fixed-point model (its per-layer counts summed).

Usage: ``python benchmarks/pwg_formats.py [--seeds N]``; writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from report import publish, table

from wavefabric.model.pwg import PWGConfig, PWGFixed, from_state_dict, random_state_dict, snr_db
from wavefabric.model.pwg_profile import calibration_mel, choose_formats, trained_like_state_dict

FRAMES = 87  # one second at 22,050 Hz, hop 256


def measure(generator, mel: np.ndarray, seed: int) -> dict:
    reference = generator.inference(mel, seed=seed)
    row = {}
    for name, formats in (("uniform", None), ("chosen", choose_formats(generator))):
        fixed = PWGFixed(generator, formats)
        counts = np.zeros(fixed.saturation_slots(), dtype=np.int64)
        y = np.concatenate(list(fixed.inference_blocks(mel, seed, counts=counts)))
        row[f"{name}_snr_db"] = round(snr_db(reference, y), 1)
        row[f"{name}_saturated"] = int(counts.sum())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="trained-like generators (default: 4)")
    args = parser.parse_args()
    config = PWGConfig()
    start = time.perf_counter()
    trained = []
    for seed in range(args.seeds):
        generator = from_state_dict(config, trained_like_state_dict(config, seed))
        trained.append({"seed": seed, **measure(generator, calibration_mel(config, FRAMES, seed=100 + seed), seed)})
    random = []
    for seed in range(8):
        generator = from_state_dict(config, random_state_dict(config, seed))
        mel = np.random.default_rng(seed).normal(0, 1, (FRAMES, config.aux_channels))
        random.append({"seed": seed, **measure(generator, mel, seed)})
    result = {"config": "ljspeech v1", "frames": FRAMES, "trained_like": trained, "random": random,
              "trained_like_min_chosen_snr_db": min(r["chosen_snr_db"] for r in trained),
              "random_worst_change_db": round(min(r["chosen_snr_db"] - r["uniform_snr_db"] for r in random), 1),
              "seconds": round(time.perf_counter() - start, 1)}
    columns = ["seed", "uniform_snr_db", "chosen_snr_db", "uniform_saturated", "chosen_saturated"]
    markdown = f"""
Fixed-vs-float waveform SNR of the ljspeech generator (1 s, {FRAMES} frames) with the uniform formats (act Q5.11,
weight Q3.13 everywhere) and with the formats `choose_formats` picks for each generator (weights from the
checkpoint, activations from the float model on the built-in calibration mel, an eighth of headroom).

Trained-like generators (`trained_like_state_dict`: a trained network's ranges), on a mel the formats were not
chosen on; target >= 45 dB with the chosen formats (least: {result['trained_like_min_chosen_snr_db']} dB):

{table(trained, columns)}

Random weights (`random_state_dict`), N(0, 1) mels; target: not worse than the uniform formats (the worst change:
{result['random_worst_change_db']:+} dB):

{table(random, columns)}

"saturated" counts the values the fixed-point model saturates (tanh/sigmoid inputs not counted). {result['seconds']} s.
"""
    publish("pwg_formats", "ParallelWaveGAN: per-tensor formats", result, markdown)


if __name__ == "__main__":
    main()
