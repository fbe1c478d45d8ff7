"""Hypothesis profiles of kdtext's fuzz tests (``tests/test_fuzz.py``).

``ci`` (the default): about 40 examples per fuzz test (a few hundred in all),
derandomized so that a run is reproducible, no deadline (a tiny model's first
call can be slow), no example database written into the work tree.
``thorough``: 10,000 examples per fuzz test (fits: a fifth of that), random.

Choose with the environment variable ``KDTEXT_HYPOTHESIS_PROFILE=thorough``.
hypothesis' own ``--hypothesis-profile thorough`` loads the profile before
pytest imports any test module, so the profiles must be registered by then:
``python -m pytest -p tests._hypothesis_profiles --hypothesis-profile thorough
tests/test_fuzz.py`` (or ``import _hypothesis_profiles`` in conftest.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ENV_VAR = "KDTEXT_HYPOTHESIS_PROFILE"

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=10_000, **_COMMON)


def profile_name() -> str:
    """``$KDTEXT_HYPOTHESIS_PROFILE``, else a profile chosen with ``--hypothesis-profile``, else ``"ci"``."""
    name = os.environ.get(ENV_VAR)
    if name:
        settings.get_profile(name)  # an unknown name is an error, not a silent default
        return name
    current = settings.get_current_profile_name()
    return "ci" if current == "default" else current


def fuzz_settings(share: float = 1.0) -> settings:
    """The active profile with ``share`` of its examples (fits are costly: e.g. 0.2)."""
    parent = settings.get_profile(profile_name())
    return settings(parent, max_examples=max(1, round(parent.max_examples * share)))
