"""
Rollout buffers with pluggable advantage estimators.

Each class is a subclass of SB3's ``RolloutBuffer`` that only replaces
``compute_returns_and_advantage``; the math lives in :mod:`sb3_po.common.estimators`.
They plug into any SB3 on-policy algorithm::

    from stable_baselines3 import PPO
    from sb3_po.common.buffers import NStepRolloutBuffer

    model = PPO("MlpPolicy", "CartPole-v1", rollout_buffer_class=NStepRolloutBuffer, rollout_buffer_kwargs=dict(n_step=5))

With a ``Dict`` observation space the same class name works: the buffer turns itself into the
matching ``DictRolloutBuffer`` variant, so users never name a different class.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_po.common.estimators import gae_advantages, monte_carlo_advantages, n_step_advantages, td_residuals

_DICT_VARIANTS: dict[type, type] = {}


def _dict_variant(cls: type) -> type:
    """The subclass of ``cls`` and ``DictRolloutBuffer`` used for Dict observation spaces (created once)."""
    if cls not in _DICT_VARIANTS:
        _DICT_VARIANTS[cls] = type(f"Dict{cls.__name__}", (cls, DictRolloutBuffer), {"__module__": cls.__module__})
    return _DICT_VARIANTS[cls]


class EstimatorRolloutBuffer(RolloutBuffer):
    """
    Base class of the rollout buffers whose advantage comes from a pure estimator function.

    Subclasses implement :meth:`estimate_advantages`; value targets are ``returns = advantages + values``
    as in SB3. Constructed with a ``Dict`` observation space, the instance is of the matching
    ``DictRolloutBuffer`` subclass.

    :param buffer_size: Number of steps per environment (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Passed by SB3's algorithms; only :class:`GAERolloutBuffer` uses it
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def __new__(cls, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any):
        if isinstance(observation_space, spaces.Dict) and not issubclass(cls, DictRolloutBuffer):
            cls = _dict_variant(cls)
        return super().__new__(cls)

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """
        :param last_values: V(s_T) for the observation after the rollout, shape (n_envs,)
        :param dones: whether the rollout's last step ended an episode, shape (n_envs,)
        :return: advantages, shape (n_steps, n_envs)
        """
        raise NotImplementedError

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        last_values_np = last_values.clone().cpu().numpy().flatten()
        self.advantages = self.estimate_advantages(last_values_np, dones).astype(np.float32, copy=False)
        self.returns = self.advantages + self.values


class GAERolloutBuffer(EstimatorRolloutBuffer):
    """
    GAE(lambda) advantages (Schulman et al. 2016); gives exactly the result of SB3's ``RolloutBuffer``.

    :param buffer_size: Number of steps per environment (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: GAE's lambda (1 = Monte Carlo, 0 = TD(0))
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return gae_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma, self.gae_lambda)


class MonteCarloRolloutBuffer(EstimatorRolloutBuffer):
    """
    Monte Carlo advantages: discounted reward-to-go minus the value baseline (GAE with lambda = 1).
    An episode cut by the end of the rollout is bootstrapped with the value of the next observation.
    ``gae_lambda`` is ignored.

    :param buffer_size: Number of steps per environment (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Ignored (accepted because SB3's algorithms pass it)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return monte_carlo_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma)


class TD0RolloutBuffer(EstimatorRolloutBuffer):
    """
    One-step TD residual as the advantage, ``r_t + gamma V(s_{t+1}) - V(s_t)`` (GAE with lambda = 0).
    ``gae_lambda`` is ignored.

    :param buffer_size: Number of steps per environment (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Ignored (accepted because SB3's algorithms pass it)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return td_residuals(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma)


class NStepRolloutBuffer(EstimatorRolloutBuffer):
    """
    A3C's n-step advantage: ``sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}) - V(s_t)`` with
    ``m = min(n_step, steps to the end of the episode or rollout)``. ``n_step=1`` is TD(0),
    ``n_step >= n_steps`` is Monte Carlo. ``gae_lambda`` is ignored.

    :param buffer_size: Number of steps per environment (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Ignored (accepted because SB3's algorithms pass it)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    :param n_step: Look-ahead length (>= 1)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        n_step: int = 5,
    ):
        if not isinstance(n_step, (int, np.integer)) or isinstance(n_step, bool) or n_step < 1:
            raise ValueError(
                f"NStepRolloutBuffer: n_step must be an integer >= 1, got {n_step!r}. "
                "Use n_step=1 for TD(0) and n_step >= n_steps for Monte Carlo."
            )
        self.n_step = int(n_step)
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return n_step_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma, self.n_step)
