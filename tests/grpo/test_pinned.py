"""GRPO's existing options keep their behaviour bit for bit across restructures (see pinned_runs.py)."""

import pytest

from tests.grpo.pinned_runs import CONFIGS, OLD_DEFAULTS, PINNED, assert_pinned


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameters_after_updates_are_pinned(name):
    assert_pinned(PINNED, name, CONFIGS, OLD_DEFAULTS)
