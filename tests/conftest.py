"""Shared test settings: one intra-op thread by default (tiny models run fastest that way on a shared 2-core CI box).

``LOCOCOURSE_TEST_THREADS=N`` runs the suite on N threads instead (0: torch's default), e.g. to check that nothing
depends on the thread count."""
import os

import pytest
import torch


def _threads() -> int:
    raw = os.environ.get("LOCOCOURSE_TEST_THREADS", "1")
    if not raw.isdigit():
        raise pytest.UsageError(f"LOCOCOURSE_TEST_THREADS must be a non-negative integer; got {raw!r}")
    return int(raw)


def pytest_configure(config):
    _threads()  # a bad value stops the run once, before collection


@pytest.fixture(autouse=True, scope="session")
def _test_threads():
    n, want = torch.get_num_threads(), _threads()
    if want:
        torch.set_num_threads(want)
    yield
    torch.set_num_threads(n)
