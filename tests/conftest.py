"""Shared pytest options: ``--backend amaranth|verilator`` picks the simulator of the tests that take ``backend``;
``collect_components`` for the modules that build components for their interfaces only."""

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from wavefabric.sim.streams import BACKENDS


def pytest_addoption(parser):
    parser.addoption("--backend", choices=BACKENDS, default="amaranth",
                     help="simulator for the tests that take the backend fixture (default: amaranth)")


@pytest.fixture
def backend(request) -> str:
    """The simulation backend chosen with ``--backend``."""
    return request.config.getoption("--backend")


@pytest.fixture
def collect_components():
    """Collect each test's components before the next test, so that no warning about them lands elsewhere."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()
