"""Issue 29's rebuild keeps the options it did not mean to change bit for bit (see pinned_runs_29.py)."""

import pytest

from tests.grpo.pinned_runs import assert_pinned
from tests.grpo.pinned_runs_29 import CONFIGS_29, PINNED_29


@pytest.mark.parametrize("name", list(CONFIGS_29))
def test_parameters_after_updates_are_pinned(name):
    assert_pinned(PINNED_29, name, CONFIGS_29, {})
