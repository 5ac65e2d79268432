import sys

import numpy as np
import pytest

from wavefabric.model.checkpoint import load_torch_file, read_state_dict, row_norm, weight_norm

EXPECTED = {"a.weight_g": (2, 1), "a.weight_v": (2, 3), "a.bias": (2,)}


def state(**overrides):
    sd = {"a.weight_g": np.ones((2, 1)), "a.weight_v": np.arange(6.0).reshape(2, 3), "a.bias": np.zeros(2)}
    sd.update(overrides)
    return sd


def test_reads_and_converts():
    arrays = read_state_dict(state(), EXPECTED, weight_norm_option="wn")
    assert set(arrays) == set(EXPECTED) and all(a.dtype == np.float64 for a in arrays.values())


def test_prefix_and_parametrization_names():
    sd = {"model.a.parametrizations.weight.original0": np.ones((2, 1)),
          "model.a.parametrizations.weight.original1": np.ones((2, 3)), "model.a.bias": np.zeros(2)}
    assert set(read_state_dict(sd, EXPECTED, weight_norm_option="wn", strip_prefix="model.")) == set(EXPECTED)


@pytest.mark.parametrize("sd, message", [
    (state(**{"a.bias": np.zeros(3)}), r"^tensor 'a.bias' has shape \(3,\), expected \(2,\)$"),
    (state(**{"a.bias": np.array([0.0, np.inf])}), r"^tensor 'a.bias' contains NaN or infinite values$"),
    (state(**{"b.bias": np.zeros(1)}), r"^checkpoint has unexpected tensor 'b.bias': does the config match it\?$"),
    ({"a.weight": np.ones((2, 3)), "a.bias": np.zeros(2)},
     r"^checkpoint is missing tensor 'a.weight_g' \(it has 'a.weight': .* set wn=False\)$"),
    ([1, 2], "a state dict must be a mapping"),
])
def test_errors_are_one_line_naming_the_tensor(sd, message):
    with pytest.raises(ValueError, match=message):
        read_state_dict(sd, EXPECTED, weight_norm_option="wn")


def test_ignored_tensors():
    read_state_dict(state(mean=np.zeros(80)), EXPECTED, weight_norm_option="wn", ignored=["mean"])


def test_weight_norm_float():
    v = np.array([[3.0, 4.0], [0.0, 2.0]])
    assert row_norm(v).ravel().tolist() == [5.0, 2.0]
    assert weight_norm(np.array([[10.0], [1.0]]), v).tolist() == [[6.0, 8.0], [0.0, 1.0]]


def test_load_without_torch_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / "x.pt").write_bytes(b"PK")
    with pytest.raises(ImportError, match=r"needs torch \(pip install torch==2.13.0\)"):
        load_torch_file(tmp_path / "x.pt")


def test_half_precision_tensors_are_widened_exactly():
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in state().items()}
    arrays = read_state_dict(sd, EXPECTED, weight_norm_option="wn")
    assert arrays["a.weight_v"].dtype == np.float64 and arrays["a.weight_v"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_bad_files_and_values_are_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="^checkpoint '.*empty.pt' is empty$"):
        load_torch_file(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk" * 100)
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"^checkpoint '.*junk.pt' cannot be loaded \(\w+\): it is truncated"):
        load_torch_file(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="^tensor 'a.bias' is a str, not an array of numbers$"):
        read_state_dict(state(**{"a.bias": "zeros"}), EXPECTED, weight_norm_option="wn")
