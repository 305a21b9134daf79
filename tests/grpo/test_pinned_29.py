"""Issue 29's rebuild keeps the options it did not mean to change bit for bit (see pinned_runs_29.py)."""

import numpy as np
import pytest

from tests.grpo.pinned_runs_29 import CONFIGS_29, PINNED_29, run
from tests.grpo.test_pinned import FIRST_UPDATE_ATOL


@pytest.mark.parametrize("name", list(CONFIGS_29))
def test_parameters_after_updates_are_pinned(name):
    pinned = np.load(PINNED_29)
    first, params, steps = run(name)
    assert steps == int(pinned[f"{name}/steps"])
    np.testing.assert_allclose(first, pinned[f"{name}/first"], rtol=0, atol=FIRST_UPDATE_ATOL)
    if np.array_equal(first, pinned[f"{name}/first"]):
        np.testing.assert_array_equal(params, pinned[name])
