"""model/pwg_profile.py: the profile of a PWG generator, the formats chosen from it, a trained-like generator."""

import dataclasses

import numpy as np
import pytest

from wavefabric.model.formats import FormatsError
from wavefabric.model.pwg import (
    MAX_SHIFT,
    PWGConfig,
    PWGFixed,
    PWGFormats,
    from_state_dict,
    random_state_dict,
    snr_db,
)
from wavefabric.model.pwg_profile import (
    TRAINED_RANGES,
    _Collector,
    _trace,
    calibration_mel,
    choose_formats,
    profile_pwg,
    trained_like_state_dict,
)

# Six layers in two stacks, hop 16: small enough for a second a test, large enough for the ranges to build up.
SMALL = PWGConfig(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=12, aux_channels=10,
                  aux_context_window=1, upsample_scales=(4, 4))


@pytest.fixture(scope="module")
def trained():
    return from_state_dict(SMALL, trained_like_state_dict(SMALL, seed=1))


def test_trained_like_ranges(trained):
    peaks = _Collector()
    _trace(from_state_dict(SMALL, trained.params, hardware_order=True), calibration_mel(SMALL), 1, peaks)
    p = peaks.peak
    assert p["f"] == pytest.approx(TRAINED_RANGES["f"], rel=1e-6)
    assert np.max(np.abs(trained.weight("first_conv"))) == pytest.approx(TRAINED_RANGES["first_conv_weight"])
    assert max(p[f"a.{n}"] for n in range(SMALL.layers)) == pytest.approx(TRAINED_RANGES["aux"], rel=1e-6)
    assert p["skips"] == pytest.approx(TRAINED_RANGES["skips"], rel=1e-6)


def test_chosen_formats_hold_a_trained_network(trained):
    """The uniform formats saturate a trained network's activations; the chosen ones do not, and the waveform's
    fixed-vs-float SNR rises past the target (45 dB) on a mel other than the calibration's."""
    mel = calibration_mel(SMALL, 12, seed=7)
    reference = trained.inference(mel, seed=3)
    uniform, chosen = PWGFixed(trained), PWGFixed(trained, choose_formats(trained))
    counts = {}
    snr = {}
    for name, fixed in (("uniform", uniform), ("chosen", chosen)):
        counts[name] = np.zeros(fixed.saturation_slots(), dtype=np.int64)
        snr[name] = snr_db(reference, np.concatenate(list(fixed.inference_blocks(mel, 3, counts=counts[name]))))
    assert counts["uniform"].sum() > 0 and counts["chosen"].sum() == 0
    assert snr["chosen"] >= 45 and snr["chosen"] > snr["uniform"] + 10


def test_random_weights_are_not_worse():
    generator = from_state_dict(SMALL, random_state_dict(SMALL, seed=4))
    mel = np.random.default_rng(4).standard_normal((10, SMALL.aux_channels))
    reference = generator.inference(mel, seed=4)
    uniform = snr_db(reference, PWGFixed(generator).inference(mel, seed=4))
    chosen = snr_db(reference, PWGFixed(generator, choose_formats(generator)).inference(mel, seed=4))
    assert chosen >= uniform - 0.5


def test_profile_rows(trained):
    formats, rows = profile_pwg(trained)
    names = [row.name for row in rows]
    assert names[:5] == ["conv_in", "first_conv", "last1", "last2", "table"]
    assert {"mel", "z", "f", "x.0", "a.0", "h.5", "skip.5", "post", "hidden", "out"} <= set(names)
    by_name = {row.name: row for row in rows}
    assert by_name["first_conv"].fmt.frac == formats.first_conv == 12  # 4.55 needs Q4.12
    assert by_name["a.2"].fmt.frac == formats.aux_term(2)
    assert all(row.saturated == 0 for row in rows if row.kind == "weight")
    assert "tanh/sigmoid" in by_name["h.0"].note and not by_name["x.0"].note
    assert formats == choose_formats(trained)  # one pass gives the same formats


def test_formats_json_round_trip(tmp_path, trained):
    formats = choose_formats(trained)
    path = tmp_path / "pwg.formats.json"
    formats.save(path, SMALL)
    assert PWGFormats.load(path, SMALL) == formats


def test_formats_of_other_sizes_are_refused(tmp_path, trained):
    path = tmp_path / "pwg.formats.json"
    choose_formats(trained).save(path, SMALL)
    with pytest.raises(FormatsError, match=r"no format for layers\.6\.conv"):
        PWGFormats.load(path, dataclasses.replace(SMALL, layers=9, stacks=3))
    with pytest.raises(FormatsError, match=r"unknown tensor 'layers\.3\.aux'"):
        PWGFormats.load(path, dataclasses.replace(SMALL, layers=3, stacks=1))


def test_shift_beyond_the_hardware_is_refused(tmp_path):
    formats = dataclasses.replace(PWGFormats.uniform(SMALL), f=0, conv_in=24)
    with pytest.raises(FormatsError, match=rf"conv_in narrowing would shift by 35 bits; the accelerator takes 0 to "
                                           rf"{MAX_SHIFT}"):
        formats.shifts(SMALL)
    formats = dataclasses.replace(PWGFormats.uniform(SMALL), skip=24, skip_w=(10,) * SMALL.layers)
    with pytest.raises(FormatsError, match="layers.0.skip narrowing would shift by -3 bits"):
        PWGFixed(from_state_dict(SMALL, random_state_dict(SMALL, 0)), formats)
