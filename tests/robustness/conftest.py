"""Fixtures of the robustness suite: one folder of inputs (models, images, masks, directions) built once, and a
check after every test that none of its files changed (sha256 before and after)."""
import hashlib

import pytest
from robustness_cases import make_inputs


def digests(root) -> dict:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("robustness") / "in")


@pytest.fixture(autouse=True)
def inputs_unchanged(inputs):
    """No input, model or direction file is created, changed or removed by a test (hashes before and after)."""
    before = digests(inputs.root)
    yield
    assert digests(inputs.root) == before, "a bad input changed the input folder"
