import os

import pytest
import torch as th

# Two cores on CI: one torch thread per worker keeps the suite fast and deterministic.
th.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
