"""Shared test settings: one intra-op thread (tiny models run fastest that way on a shared 2-core CI box)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
