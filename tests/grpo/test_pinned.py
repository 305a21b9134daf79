"""GRPO's existing options keep their behaviour bit for bit across restructures (see pinned_runs.py)."""

import numpy as np
import pytest

from tests.grpo.pinned_runs import CONFIGS, PINNED, run


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameters_after_updates_are_pinned(name):
    pinned = np.load(PINNED)
    params, steps = run(name)
    assert steps == int(pinned[f"{name}/steps"])
    # bit-identical on the machine that wrote the file; 1e-6 leaves room only for another CPU's float kernels
    np.testing.assert_allclose(params, pinned[name], rtol=0, atol=1e-6)
