"""
Minibatches that know where they come from: per-sample data kept beside the rollout buffer (KLPPO's snapshot of
pi_old, GRPO's log-probabilities and distributions of pi_ref) is looked up with the minibatch's positions in the
flattened rollout. One mechanism for both: :func:`minibatch_indices` draws the positions (one
``np.random.permutation`` of the rollout, as SB3's ``RolloutBuffer.get`` does), and the buffer's ``_get_samples``
turns them into samples; KLPPO keeps the positions beside SB3's ``RolloutBufferSamples``
(:func:`indexed_minibatches`), GRPO's samples carry them (``GroupRolloutBufferSamples.indices``).
"""

from collections.abc import Generator

import numpy as np
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples


def minibatch_indices(
    n_samples: int, batch_size: int | None = None, n_minibatches: int | None = None
) -> Generator[np.ndarray, None, None]:
    """
    Random minibatches of positions ``0 .. n_samples - 1``, from one ``np.random.permutation(n_samples)`` (NumPy's
    global generator, as SB3's buffers draw them).

    :param n_samples: the rollout's size
    :param batch_size: consecutive slices of this size of the permutation (SB3's ``RolloutBuffer.get(batch_size)``;
        the last one shorter when ``batch_size`` does not divide ``n_samples``)
    :param n_minibatches: or ``np.array_split`` of the permutation into this many (nearly) equal parts
    """
    if (batch_size is None) == (n_minibatches is None):
        raise ValueError("minibatch_indices: give either batch_size or n_minibatches")
    indices = np.random.permutation(n_samples)
    if n_minibatches is not None:
        yield from np.array_split(indices, n_minibatches)
        return
    for start in range(0, n_samples, batch_size):  # type: ignore[arg-type]
        yield indices[start : start + batch_size]  # type: ignore[operator]


def flatten_rollout(buffer: RolloutBuffer) -> None:
    """
    Flatten a rollout buffer (``(n_steps, n_envs, ...)`` -> ``(n_steps * n_envs, ...)``) through its own ``get()``,
    whatever its class (Dict, Maskable, ...), without consuming NumPy's global generator: ``get`` draws a permutation
    first, which would shift every permutation drawn after it.
    """
    if not buffer.generator_ready:
        rng_state = np.random.get_state()
        next(buffer.get(batch_size=None))
        np.random.set_state(rng_state)


def indexed_minibatches(
    buffer: RolloutBuffer, batch_size: int
) -> Generator[tuple[np.ndarray, RolloutBufferSamples], None, None]:
    """
    SB3's ``RolloutBuffer.get(batch_size)`` that also yields each minibatch's positions in the flattened rollout:
    the same permutation (drawn when the first minibatch is asked for, as in ``get``), the same minibatches in the
    same order.

    :param buffer: a full rollout buffer
    :param batch_size: the minibatch size
    """
    flatten_rollout(buffer)
    for indices in minibatch_indices(buffer.buffer_size * buffer.n_envs, batch_size=batch_size):
        yield indices, buffer._get_samples(indices)
