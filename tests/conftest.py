"""Shared pytest configuration: the hypothesis profiles, and the ``device`` fixture of the
tests that need a GPU.

``HYPOTHESIS_PROFILE=ci`` (the default) runs a quick but varied search on every test run;
``HYPOTHESIS_PROFILE=slow`` runs thousands of examples per property, for a thorough hunt.
"""

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from bcers import gpu

# Examples are built from a few drawn choices plus NumPy arrays of up to ~70k elements (to cross
# the chunk and thread boundaries); that is slower than hypothesis expects of a data generator.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]

# Under CI the examples are drawn from a fixed seed, so that a run's outcome is the code's alone;
# elsewhere each run draws new ones (`HYPOTHESIS_PROFILE=slow` draws many more).
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "slow",
    max_examples=5000,
    deadline=None,
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


REQUIRED = os.environ.get("BCERS_REQUIRE_GPU") == "1"


def _unavailable_reason() -> str | None:
    if gpu.is_available():
        return None
    try:
        gpu.adapter_info()
    except RuntimeError as e:
        return str(e)
    return "bcers.gpu.is_available() is False"


@pytest.fixture(scope="module")
def device() -> dict[str, Any]:
    """The adapter's description; skips (or fails under BCERS_REQUIRE_GPU=1, as in CI) without
    one."""
    why = _unavailable_reason()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"BCERS_REQUIRE_GPU=1 but the GPU path is unavailable: {why}")
        pytest.skip(f"no GPU: {why}")
    return gpu.adapter_info()
