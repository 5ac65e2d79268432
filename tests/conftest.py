"""Shared pytest options: ``--backend amaranth|verilator`` picks the simulator of the tests that take ``backend``."""

import pytest

from wavefabric.sim.streams import BACKENDS


def pytest_addoption(parser):
    parser.addoption("--backend", choices=BACKENDS, default="amaranth",
                     help="simulator for the tests that take the backend fixture (default: amaranth)")


@pytest.fixture
def backend(request) -> str:
    """The simulation backend chosen with ``--backend``."""
    return request.config.getoption("--backend")
