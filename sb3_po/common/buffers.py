"""
Pluggable advantage estimators for every SB3 and sb3-contrib rollout buffer.

An estimator is a mixin (:class:`GAEEstimator`, :class:`MonteCarloEstimator`, :class:`TD0Estimator`,
:class:`NStepEstimator`) that replaces only ``compute_returns_and_advantage`` of the buffer it is mixed into;
the math lives in :mod:`sb3_po.common.estimators`. Storage, sampling, action masks and LSTM states stay the
buffer's own. Ready-made compositions, one per estimator and buffer family:

============================  ===========================================  ===================================
buffer family                 algorithms                                   classes
============================  ===========================================  ===================================
``RolloutBuffer``             PPO, A2C, TRPO, VPG, KLPPO                   ``NStepRolloutBuffer``, ...
``MaskableRolloutBuffer``     MaskablePPO                                  ``MaskableNStepRolloutBuffer``, ...
``RecurrentRolloutBuffer``    RecurrentPPO (:mod:`sb3_po.ppo_recurrent`)   ``RecurrentNStepRolloutBuffer``, ...
============================  ===========================================  ===================================

(``GAE``, ``MonteCarlo``, ``TD0`` or ``NStep`` in place of ``NStep``.) They plug in as SB3's algorithms take a
buffer::

    from stable_baselines3 import PPO
    from sb3_po.common.buffers import NStepRolloutBuffer

    model = PPO("MlpPolicy", "CartPole-v1", rollout_buffer_class=NStepRolloutBuffer, rollout_buffer_kwargs=dict(n_step=5))

With a ``Dict`` observation space the same class name works: constructing it builds the same estimator over the
family's Dict buffer (``DictRolloutBuffer``, ``MaskableDictRolloutBuffer``, ``RecurrentDictRolloutBuffer``),
and that instance counts as an instance of the class that was named. Any other buffer composes the same way,
estimator first::

    class MyNStepRolloutBuffer(NStepEstimator, MyRolloutBuffer, dict_variant=MyDictRolloutBuffer):
        \"\"\"A3C's n-step advantage in my buffer\"\"\"
"""

import difflib
import inspect
from abc import ABCMeta
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_po.common.checks import check_int
from sb3_po.common.estimators import gae_advantages, monte_carlo_advantages, n_step_advantages, td_residuals


class _EstimatorBufferMeta(ABCMeta):
    """
    Calling an estimator buffer class with a ``Dict`` observation space builds its ``dict_variant`` (the same
    estimator over the family's Dict buffer), and such an instance counts as an instance of the named class.
    """

    dict_variant: Any  # set on each estimator buffer class

    def __call__(cls, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any):
        target, dict_variant = cls, cls.dict_variant
        if isinstance(observation_space, spaces.Dict) and not issubclass(cls, DictRolloutBuffer):
            if dict_variant is None:
                raise TypeError(
                    f"{cls.__name__} got a Dict observation space but has no Dict variant: compose the estimator with "
                    f"a Dict buffer, e.g. `class My{cls.__name__}(<Estimator>, <buffer>, dict_variant=DictRolloutBuffer)`."
                )
            target = dict_variant
        _check_keywords(cls, target, kwargs)
        _check_masking(cls, target, args[0] if args else kwargs.get("action_space"))
        return super(_EstimatorBufferMeta, target).__call__(buffer_size, observation_space, *args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return super().__instancecheck__(instance) or (cls.dict_variant is not None and isinstance(instance, cls.dict_variant))


def _check_keywords(named: type, target: type, kwargs: dict[str, Any]) -> None:
    """
    A keyword the buffer does not take (most often a typo in ``rollout_buffer_kwargs``) names the estimator and the
    keywords it takes, instead of the buffer's ``__init__() got an unexpected keyword argument``.
    """
    buffer = next(c for c in target.__mro__ if issubclass(c, RolloutBuffer) and not issubclass(c, AdvantageEstimator))
    parameters = inspect.signature(buffer.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # a buffer that takes any keyword: it checks them itself
    own = list(getattr(target, "estimator_keywords", ()))
    accepted = set(own) | (set(parameters) - {"self"})
    for name in kwargs:
        if name in accepted:
            continue
        message = f"{named.__name__} got an unexpected keyword argument {name!r} (in rollout_buffer_kwargs?)"
        takes = f"it takes {', '.join(own)}" if own else "it takes no keyword of its own (leave rollout_buffer_kwargs empty)"
        close = difflib.get_close_matches(name, own, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{message}: {takes}{hint}")


def _check_masking(named: type, target: type, action_space: Any) -> None:
    """sb3-contrib's action masks exist for discrete actions only: say so, not "Unsupported action space"."""
    if not issubclass(target, (MaskableRolloutBuffer, MaskableDictRolloutBuffer)) or action_space is None:
        return
    if not isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        unmasked = named.__name__.removeprefix("Maskable")
        raise ValueError(
            f"{named.__name__}: action masking needs discrete actions (Discrete, MultiDiscrete or MultiBinary), got "
            f"{action_space}. For this action space use PPO (or another algorithm) with {unmasked}, without masks."
        )


class AdvantageEstimator(metaclass=_EstimatorBufferMeta):
    """
    Mixin for any SB3 ``RolloutBuffer`` (or subclass): the advantage comes from :meth:`estimate_advantages`, a
    pure estimator function on the buffer's arrays; value targets are ``returns = advantages + values`` as in SB3.

    Put it before the buffer in the bases. ``dict_variant=<a DictRolloutBuffer subclass>`` in the class
    statement makes the class build the same estimator over that buffer when given a ``Dict`` observation space.
    """

    dict_variant: ClassVar[type | None] = None
    estimator_keywords: ClassVar[tuple[str, ...]] = ()  # the estimator's own keywords (rollout_buffer_kwargs)
    rewards: np.ndarray
    values: np.ndarray
    episode_starts: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    gamma: float
    gae_lambda: float

    def __init_subclass__(cls, dict_variant: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls, RolloutBuffer):
            return  # an estimator mixin itself
        if cls.compute_returns_and_advantage is not AdvantageEstimator.compute_returns_and_advantage:
            raise TypeError(f"{cls.__name__}: put the estimator before the rollout buffer in the bases")
        cls.dict_variant = None  # never inherited: a subclass's own methods would be lost in its parent's variant
        if dict_variant is not None:
            if not issubclass(dict_variant, DictRolloutBuffer):
                raise TypeError(f"{cls.__name__}: dict_variant must be a DictRolloutBuffer subclass, got {dict_variant}")
            estimators = tuple(base for base in cls.__bases__ if not issubclass(base, RolloutBuffer))
            family = dict_variant.__name__.removesuffix("DictRolloutBuffer")  # "", "Maskable", "Recurrent"
            rest = cls.__name__.removeprefix(family)
            name = f"{family}Dict{rest}" if family and rest != cls.__name__ else f"Dict{cls.__name__}"
            cls.dict_variant = type(name, (*estimators, dict_variant), {"__module__": cls.__module__, "__doc__": cls.__doc__})

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


class GAEEstimator(AdvantageEstimator):
    """
    GAE(lambda) advantages (Schulman et al. 2016); gives exactly the result of SB3's ``RolloutBuffer``
    (and of the sb3-contrib buffers, which inherit its computation).

    :param gae_lambda: GAE's lambda (1 = Monte Carlo, 0 = TD(0)), passed by the algorithm
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return gae_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma, self.gae_lambda)


class MonteCarloEstimator(AdvantageEstimator):
    """
    Monte Carlo advantages: discounted reward-to-go minus the value baseline (GAE with lambda = 1).
    An episode cut by the end of the rollout is bootstrapped with the value of the next observation; with
    ``V = 0`` (VPG's ``baseline="none"``) that bootstrap is zero, so such an episode gets a truncated
    reward-to-go (the rewards up to the rollout's end only). ``gae_lambda`` is ignored.
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return monte_carlo_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma)


class TD0Estimator(AdvantageEstimator):
    """
    One-step TD residual as the advantage, ``r_t + gamma V(s_{t+1}) - V(s_t)`` (GAE with lambda = 0).
    ``gae_lambda`` is ignored.
    """

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return td_residuals(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma)


class NStepEstimator(AdvantageEstimator):
    """
    A3C's n-step advantage: ``sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}) - V(s_t)`` with
    ``m = min(n_step, steps to the end of the episode or rollout)``. ``n_step=1`` is TD(0),
    ``n_step >= n_steps`` is Monte Carlo. ``gae_lambda`` is ignored.

    :param args: The buffer's own arguments
    :param n_step: Look-ahead length (>= 1), keyword only
    :param kwargs: The buffer's own keyword arguments
    """

    estimator_keywords: ClassVar[tuple[str, ...]] = ("n_step",)

    def __init__(self, *args: Any, n_step: int = 5, **kwargs: Any):
        check_int(
            type(self).__name__, "n_step", n_step, 1, hint="Use n_step=1 for TD(0) and n_step >= n_steps for Monte Carlo."
        )
        self.n_step = int(n_step)
        super().__init__(*args, **kwargs)

    def estimate_advantages(self, last_values: np.ndarray, dones: np.ndarray) -> np.ndarray:
        return n_step_advantages(self.rewards, self.values, self.episode_starts, last_values, dones, self.gamma, self.n_step)


# -- SB3's RolloutBuffer: PPO, A2C, TRPO, VPG, KLPPO ---------------------------------------------------------


class GAERolloutBuffer(GAEEstimator, RolloutBuffer, dict_variant=DictRolloutBuffer):
    """GAE(lambda) in SB3's ``RolloutBuffer`` (``DictRolloutBuffer`` for Dict observations); see :class:`GAEEstimator`."""


class MonteCarloRolloutBuffer(MonteCarloEstimator, RolloutBuffer, dict_variant=DictRolloutBuffer):
    """
    Monte Carlo advantages in SB3's ``RolloutBuffer`` (``DictRolloutBuffer`` for Dict observations); see
    :class:`MonteCarloEstimator`. With VPG's ``baseline="none"`` (V = 0) an episode cut by the rollout's end
    gets a truncated reward-to-go: nothing is added for the rewards after the rollout.
    """


class TD0RolloutBuffer(TD0Estimator, RolloutBuffer, dict_variant=DictRolloutBuffer):
    """TD(0) advantages in SB3's ``RolloutBuffer`` (``DictRolloutBuffer`` for Dict observations); see :class:`TD0Estimator`."""


class NStepRolloutBuffer(NStepEstimator, RolloutBuffer, dict_variant=DictRolloutBuffer):
    """n-step advantages in SB3's ``RolloutBuffer`` (``DictRolloutBuffer`` for Dict observations); see ``NStepEstimator``."""


# -- sb3-contrib's MaskableRolloutBuffer: MaskablePPO -------------------------------------------------------


class MaskableGAERolloutBuffer(GAEEstimator, MaskableRolloutBuffer, dict_variant=MaskableDictRolloutBuffer):
    """GAE(lambda) in ``MaskableRolloutBuffer`` (``MaskableDictRolloutBuffer`` for Dict observations), for MaskablePPO."""


class MaskableMonteCarloRolloutBuffer(MonteCarloEstimator, MaskableRolloutBuffer, dict_variant=MaskableDictRolloutBuffer):
    """Monte Carlo in ``MaskableRolloutBuffer`` (``MaskableDictRolloutBuffer`` for Dict observations), for MaskablePPO."""


class MaskableTD0RolloutBuffer(TD0Estimator, MaskableRolloutBuffer, dict_variant=MaskableDictRolloutBuffer):
    """TD(0) in ``MaskableRolloutBuffer`` (``MaskableDictRolloutBuffer`` for Dict observations), for MaskablePPO."""


class MaskableNStepRolloutBuffer(NStepEstimator, MaskableRolloutBuffer, dict_variant=MaskableDictRolloutBuffer):
    """n-step in ``MaskableRolloutBuffer`` (``MaskableDictRolloutBuffer`` for Dict observations), for MaskablePPO."""


# -- sb3-contrib's RecurrentRolloutBuffer: RecurrentPPO through sb3_po.ppo_recurrent.RecurrentPPO -----------


class RecurrentGAERolloutBuffer(GAEEstimator, RecurrentRolloutBuffer, dict_variant=RecurrentDictRolloutBuffer):
    """GAE(lambda) in ``RecurrentRolloutBuffer`` (``RecurrentDictRolloutBuffer`` for Dict observations), for RecurrentPPO."""


class RecurrentMonteCarloRolloutBuffer(MonteCarloEstimator, RecurrentRolloutBuffer, dict_variant=RecurrentDictRolloutBuffer):
    """Monte Carlo in ``RecurrentRolloutBuffer`` (``RecurrentDictRolloutBuffer`` for Dict observations), for RecurrentPPO."""


class RecurrentTD0RolloutBuffer(TD0Estimator, RecurrentRolloutBuffer, dict_variant=RecurrentDictRolloutBuffer):
    """TD(0) in ``RecurrentRolloutBuffer`` (``RecurrentDictRolloutBuffer`` for Dict observations), for RecurrentPPO."""


class RecurrentNStepRolloutBuffer(NStepEstimator, RecurrentRolloutBuffer, dict_variant=RecurrentDictRolloutBuffer):
    """n-step in ``RecurrentRolloutBuffer`` (``RecurrentDictRolloutBuffer`` for Dict observations), for RecurrentPPO."""
