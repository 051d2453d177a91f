"""Shared pytest configuration: the hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (the default) runs a quick but varied search on every test run;
``HYPOTHESIS_PROFILE=slow`` runs thousands of examples per property, for a thorough hunt.
"""

import os

from hypothesis import HealthCheck, settings

# Examples are built from a few drawn choices plus NumPy arrays of up to ~70k elements (to cross
# the chunk and thread boundaries); that is slower than hypothesis expects of a data generator.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=False,
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
