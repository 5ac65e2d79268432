"""wavefabric: Amaranth HDL accelerators for neural audio synthesis, verified against NumPy models."""

__version__ = "0.1.0"
