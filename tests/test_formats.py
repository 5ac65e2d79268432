"""model/formats.py: the format rule, the tensor profile, the formats JSON."""

import json

import numpy as np
import pytest

from wavefabric.model.fixed import QFormat
from wavefabric.model.formats import FormatsError, TensorProfile, frac_for, load_formats, profile_table, save_formats


@pytest.mark.parametrize("peak, headroom, frac", [
    (3.4, 1.0, 13),     # Q3.13 holds up to 3.9999
    (4.55, 1.0, 12),    # a trained first_conv: beyond Q3.13
    (3.99, 1.0, 13),
    (4.0, 1.0, 12),     # 4.0 itself needs the next integer bit
    (19.1, 2.0, 9),     # an activation: one bit of headroom over its peak (38.2 < 64)
    (0.0, 1.0, 24),     # an all-zero tensor: the finest legal format
    (1e6, 1.0, 0),      # clamped to lo
])
def test_frac_for(peak, headroom, frac):
    assert frac_for(peak, 16, headroom, 0, 24) == frac
    if 0 < frac < 24:
        fmt = QFormat(16, frac)
        assert peak * headroom <= fmt.max_value < 2 * peak * headroom  # the most precision that fits


def test_tensor_profile_counts_saturated_and_lost_values():
    fmt = QFormat(8, 4)  # range [-8, 7.9375], lsb 1/16
    values = np.array([0.0, 0.01, -0.03, 0.04, 7.9, 8.0, -8.0, -8.1, 100.0, 1.5])
    row = TensorProfile.measure("t", "act", values, fmt)
    assert row.count == 10
    assert row.saturated == 3      # 8.0, -8.1 and 100 (-8.0 is the format's minimum)
    assert row.lost == 2           # 0.01 and -0.03 round to zero; 0.04 rounds to one lsb; 0.0 is not lost
    assert row.stats[0] == -8.1 and row.stats[-1] == 100.0 and row.peak == 100.0 and len(row.magnitudes) == 5
    assert "t" in profile_table([row]) and "Q4.4" in profile_table([row])


def test_formats_round_trip(tmp_path):
    path = tmp_path / "f.json"
    save_formats(path, "pwg", 16, {"a": 3, "b": 12})
    assert load_formats(path, "pwg", 16, ["a", "b"], 0, 24) == {"a": 3, "b": 12}


@pytest.mark.parametrize("doc, message", [
    ("{", "not a formats JSON"),
    ('{"network": "pwg", "width": 16}', r"no 'frac' table"),
    ('{"network": "samplernn", "width": 16, "frac": {"a": 1, "b": 1}}', "formats for 'samplernn', not 'pwg'"),
    ('{"network": "pwg", "width": 8, "frac": {"a": 1, "b": 1}}', "8-bit storage; this hardware stores 16 bits"),
    ('{"network": "pwg", "width": 16, "frac": {"a": 1}}', "no format for b"),
    ('{"network": "pwg", "width": 16, "frac": {"a": 1, "b": 1, "c": 1}}', "unknown tensor 'c'"),
    ('{"network": "pwg", "width": 16, "frac": {"a": 1, "b": 25}}', "b's frac must be an integer from 0 to 24, not 25"),
    ('{"network": "pwg", "width": 16, "frac": {"a": true, "b": 1}}', "a's frac must be an integer"),
])
def test_bad_formats_json(tmp_path, doc, message):
    path = tmp_path / "f.json"
    path.write_text(doc)
    with pytest.raises(FormatsError, match=message) as error:
        load_formats(path, "pwg", 16, ["a", "b"], 0, 24)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_missing_formats_file(tmp_path):
    with pytest.raises(FormatsError, match="cannot read the formats"):
        load_formats(tmp_path / "none.json", "pwg", 16, ["a"], 0, 24)


def test_saved_formats_are_json_with_the_network(tmp_path):
    path = tmp_path / "f.json"
    save_formats(path, "samplernn", 16, {"x": 5})
    assert json.loads(path.read_text()) == {"network": "samplernn", "width": 16, "frac": {"x": 5}}
