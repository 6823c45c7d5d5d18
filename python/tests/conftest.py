"""pytest setup: import kdloss_torch from the in-place build in python/ (see python/README.md)."""

import os
import sys

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

try:
    import kdloss_torch  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise pytest.UsageError("kdloss_torch is not built (%s); build it first: cd python && python3 setup.py "
                            "build_ext --inplace   (scripts/test.sh does it)" % e)


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)
    yield


@pytest.fixture(params=["fused", "recompute"])
def backward_mode(request):
    """Runs a test under both backward strategies."""
    import kdloss_torch
    with kdloss_torch.backward_mode(request.param):
        yield request.param
