"""PyTorch state dicts into validated NumPy arrays, shared by the network models.

torch is imported only by :func:`load_torch_file`; state dicts can hold NumPy arrays or torch tensors (read
through ``.detach().cpu().numpy()`` without importing torch).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["read_state_dict", "load_torch_file", "row_norm", "weight_norm"]

# torch.nn.utils.parametrizations.weight_norm stores g as original0 and v as original1.
_PARAMETRIZATION = re.compile(r"\.parametrizations\.weight\.original([01])$")


def _canonical_names(state_dict: Mapping, strip_prefix: str | None) -> dict[str, object]:
    keys = list(state_dict)
    strip = strip_prefix is not None and bool(keys) and all(key.startswith(strip_prefix) for key in keys)
    out = {}
    for key, value in state_dict.items():
        name = key[len(strip_prefix):] if strip else key
        out[_PARAMETRIZATION.sub(lambda m: ".weight_g" if m.group(1) == "0" else ".weight_v", name)] = value
    return out


def _missing_hint(name: str, tensors: Mapping, option: str) -> str:
    """Why a tensor may be missing: the checkpoint and the config disagree about weight norm."""
    plain = re.sub(r"\.weight_[gv]$", ".weight", name)
    if plain != name and plain in tensors:
        return f" (it has '{plain}': the checkpoint has no weight norm, set {option}=False)"
    if name.endswith(".weight") and name + "_v" in tensors:
        return f" (it has '{name}_v': the checkpoint uses weight norm, set {option}=True)"
    return ""


def read_state_dict(state_dict: Mapping, expected: Mapping[str, tuple[int, ...]], *, weight_norm_option: str,
                    strip_prefix: str | None = None, ignored: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Check a state dict against the tensors a config expects and return them as float64 arrays.

    Parameters
    ----------
    state_dict : mapping of str to array
        NumPy arrays or torch tensors of any real dtype (float16 and bfloat16 are widened exactly).
        ``X.parametrizations.weight.original0/1`` (PyTorch's newer
        ``weight_norm``) are read as ``X.weight_g`` / ``X.weight_v``.
    expected : mapping of str to shape
        Every tensor the config needs.
    weight_norm_option : str
        The config's weight-norm switch, named in the error when checkpoint and config disagree about it.
    strip_prefix : str, optional
        Removed from every key when every key has it (training wrappers such as samplernn-pytorch's
        ``Predictor`` save the network as ``model``).
    ignored : names of tensors that may be present and are not used.

    Raises
    ------
    ValueError
        One line naming the first tensor that is missing, has the wrong shape or is not finite, or the first
        unexpected one (as PyTorch's strict ``load_state_dict``: it means the checkpoint and config disagree).
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"a state dict must be a mapping of names to tensors, not {type(state_dict).__name__}")
    tensors = _canonical_names(state_dict, strip_prefix)
    arrays = {}
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"checkpoint is missing tensor '{name}'{_missing_hint(name, tensors, weight_norm_option)}")
        value = tensors[name]
        if hasattr(value, "detach"):
            # .double() first: NumPy has no bfloat16, and float16 or bfloat16 widen to float64 exactly.
            value = value.detach().cpu().double().numpy()
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"tensor '{name}' is a {type(value).__name__}, not an array of numbers") from None
        if array.shape != tuple(shape):
            raise ValueError(f"tensor '{name}' has shape {array.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"tensor '{name}' contains NaN or infinite values")
        arrays[name] = array
    extra = sorted(set(tensors) - set(expected) - set(ignored))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ValueError(f"checkpoint has unexpected tensor '{extra[0]}'{more}: does the config match it?")
    return arrays


def load_torch_file(path: str | Path) -> object:
    """``torch.load`` a checkpoint on the CPU with ``weights_only=True`` (no pickled code runs).

    Raises
    ------
    ImportError
        If torch is not installed (it is a test extra, not a dependency).
    OSError
        If the file cannot be opened (missing, a folder, unreadable).
    ValueError
        One line naming ``path`` if it is not a checkpoint torch can load safely: empty, truncated, not a
        ``torch.save`` file, or a pickle of objects other than tensors and plain containers.
    """
    path = Path(path)
    # Without torch nothing can be loaded: say that first, whatever the file.
    try:
        import torch
    except ImportError as error:
        raise ImportError("loading a PyTorch checkpoint needs torch (pip install torch==2.13.0); without it, "
                          "pass a dict of NumPy arrays to from_state_dict") from error
    with open(path, "rb") as file:  # OSError (missing, a folder, unreadable) as it is
        if not file.read(1):
            raise ValueError(f"checkpoint {str(path)!r} is empty")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then reads or refuses anyway
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as error:  # torch raises many kinds for a bad file: all mean the same to the caller
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded ({type(error).__name__}): it is truncated or "
                         "corrupt, not a torch.save file, or holds objects other than tensors") from None


def row_norm(v: np.ndarray) -> np.ndarray:
    """``||v||`` over every axis but the first, broadcastable against ``v`` (PyTorch's ``norm_except_dim``)."""
    return np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float ``g * v / ||v||`` with the norm over every axis but the first (PyTorch ``weight_norm(dim=0)``).

    For a ``ConvTranspose1d`` weight ``(in, out, k)`` axis 0 is the input channel, as in PyTorch.
    """
    return v * (g / row_norm(v))
