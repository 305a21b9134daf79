"""
Putting an environment back into a state it was in: what GRPO needs to start a group of episodes
from one shared state.

The protocol is two methods on the env (or on any wrapper of it)::

    state = env.get_state()     # anything: the env's full state
    env.set_state(state)        # back into exactly that state

Built in, without users writing anything:

- Gymnasium's classic-control envs (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum):
  their physical state attributes;
- MuJoCo envs: the full physics and integrator state through ``mujoco.mj_getState`` / ``mj_setState``;
- the Arcade Learning Environment (``ale_py``'s ``AtariEnv``, the ``pixels`` extra): the emulator state through
  ``clone_state`` / ``restore_state``, the system RNG kept apart so that restored members draw their own sticky actions;
- MinAtar (``minatar``'s gymnasium envs, the ``pixels`` extra; :func:`register_minatar` registers them): the game
  object copied, its random generator kept apart;
- ``state_mode="copy"``: a deep copy of the env below ``Monitor`` (any env that deep-copies), verified once;
- ``state_mode="seed"``: for envs whose ``reset(seed=s)`` is deterministic (every Gymnasium env, Box2D included):
  a start state *is* a seed; only reset states can be shared, not states in the middle of an episode.

:class:`RestorableEnv` is the wrapper (outermost, above ``Monitor``) that GRPO talks to through
``VecEnv.env_method``, so it works in ``DummyVecEnv`` and ``SubprocVecEnv`` alike. Its snapshots also carry
the state of the wrappers below or above ``Monitor`` that matters: ``TimeLimit``'s elapsed steps,
``OrderEnforcing``'s reset flag, a frame stack's frames (``FrameStackObservation``), SB3's ``EpisodicLifeEnv``,
``StickyActionEnv`` and ``MaxAndSkipEnv``, and ``Monitor``'s rewards of the episode so far (so the episode returns
Monitor reports stay whole, truthful episodes from a reset). Every backend is verified when the wrapper is built:
snapshot, step a few actions, restore, replay the same actions with the same random-number state, compare. A
mismatch fails there, with a message naming the env, the reason and the ways out; nothing falls back silently.
"""

import copy
import multiprocessing
import sys
from collections.abc import Iterator
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation, OrderEnforcing, TimeLimit
from stable_baselines3.common.monitor import Monitor

from sb3_po.common.checks import check_choice
from sb3_po.common.optional import require

MODES = ("auto", "state", "copy", "seed")

# Classic-control envs: the attributes that hold their whole dynamic state
_CLASSIC_CONTROL_ATTRS = ("state", "steps_beyond_terminated", "last_u")


def _stateful_wrappers() -> dict[type, tuple[str, ...]]:
    """
    The wrappers (above or below ``Monitor``) that carry state of their own from one step to the next, and the
    attributes holding it, which every snapshot copies. A wrapper with such state that is not listed fails the
    restore check (its state would not come back), so nothing is restored half.
    """
    wrappers: dict[type, tuple[str, ...]] = {
        # the frame stack: its queue of the last frames, and the padding it fills a new episode with
        FrameStackObservation: ("obs_queue", "padding_value"),
    }
    # SB3's Atari wrappers, when the env uses them (no import here: only a module already imported can be in use)
    atari = sys.modules.get("stable_baselines3.common.atari_wrappers")
    if atari is not None:
        wrappers[atari.EpisodicLifeEnv] = ("lives", "was_real_done")
        wrappers[atari.StickyActionEnv] = ("_sticky_action",)
        # the frames it max-pools: the older one is stale after an episode that ended within the skip
        wrappers[atari.MaxAndSkipEnv] = ("_obs_buffer",)
    return wrappers


class EnvStateError(RuntimeError):
    """The env's state cannot be saved and restored exactly."""


def _env_name(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return f"'{spec.id}' ({type(env.unwrapped).__name__})" if spec is not None else type(env.unwrapped).__name__


def _ways_out(mode: str) -> str:
    seed_hint = "" if mode == "seed" else " or use state_mode='seed' (members start from reset(seed=s) with a shared s)"
    return f"Ways out: implement get_state() and set_state(state) on the env{seed_hint}."


def _has_protocol(env: Any) -> bool:
    return callable(getattr(type(env), "get_state", None)) and callable(getattr(type(env), "set_state", None))


def _is_mujoco(env: gym.Env) -> bool:
    # No import: an env that is a MujocoEnv has had gymnasium's MuJoCo module imported already. Importing it here
    # would fail on installs without MuJoCo (gymnasium raises DependencyNotInstalled, which is not an ImportError)
    mujoco_env = sys.modules.get("gymnasium.envs.mujoco.mujoco_env")
    return mujoco_env is not None and isinstance(env, getattr(mujoco_env, "MujocoEnv", ()))


def _is_ale(env: gym.Env) -> bool:
    # as _is_mujoco: an AtariEnv has had ale_py.env imported; nothing is imported here
    ale_env = sys.modules.get("ale_py.env")
    return ale_env is not None and isinstance(env, getattr(ale_env, "AtariEnv", ()))


def _is_minatar(env: gym.Env) -> bool:
    minatar_gym = sys.modules.get("minatar.gym")
    return minatar_gym is not None and isinstance(env, getattr(minatar_gym, "BaseEnv", ()))


def register_minatar() -> None:
    """
    Register MinAtar's games with gymnasium (``MinAtar/Breakout-v1``, ``-v0`` with the full action set; also Asterix,
    Freeway, Seaquest, SpaceInvaders): the ``minatar`` package defines them but registers them only when asked.
    """
    minatar_gym = require("minatar.gym", feature="MinAtar's games", extra="pixels")
    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar_gym.register_envs()


def _is_classic_control(env: gym.Env) -> bool:
    return type(env).__module__.startswith("gymnasium.envs.classic_control")


class RestorableEnv(gym.Wrapper):
    """
    Wrapper that saves and restores the full state of the env it wraps (see the module's docstring).

    :param env: The env, usually ``Monitor``-wrapped (``make_vec_env(..., wrapper_class=RestorableEnv)``)
    :param state_mode: ``"auto"`` (the env's own get_state/set_state, else the built-in classic-control or MuJoCo
        support, else a verified deep copy), ``"state"`` (own protocol or built-in only), ``"copy"`` or ``"seed"``
    :param verify_steps: How many steps the construction-time check replays
    :param seed: Seed of the wrapper's own random numbers (the seeds of ``state_mode="seed"``, fresh env RNGs after a copy)
    """

    def __init__(self, env: gym.Env, state_mode: str = "auto", verify_steps: int = 5, seed: int | None = None):
        super().__init__(env)
        check_choice("RestorableEnv", "state_mode", state_mode, MODES)
        self.state_mode = state_mode
        self.rng = np.random.default_rng(seed)
        # Monitor's bookkeeping is restored by attribute; everything below it is the "inner" env
        layer: gym.Env = env
        self.monitor: Monitor | None = None
        while isinstance(layer, gym.Wrapper):
            if isinstance(layer, Monitor):
                self.monitor = layer
                break
            layer = layer.env
        self.inner: gym.Env = self.monitor.env if self.monitor is not None else env
        #: why the env cannot be restored, where the check failed in a VecEnv's worker process (see below)
        self.restore_error: str | None = None
        try:
            self.backend = self._choose_backend(state_mode)
            self._verify(verify_steps)
        except EnvStateError as error:
            if multiprocessing.parent_process() is None:
                raise
            # In a SubprocVecEnv's worker, raising here would print the message from every worker and end in the
            # main process's ConnectionResetError. The env is built, unusable: the main process raises the message
            # once, from check_restorable (GRPO calls it) or from any restore call.
            self.backend, self.restore_error = "none", str(error)

    # -- backends -------------------------------------------------------------------------------------

    def _protocol_layer(self) -> gym.Env | None:
        """The outermost env below Monitor that implements get_state/set_state itself."""
        layer = self.inner
        while True:
            if _has_protocol(layer):
                return layer
            if not isinstance(layer, gym.Wrapper):
                return None
            layer = layer.env

    def _choose_backend(self, mode: str) -> str:
        if mode == "seed":
            return "seed"
        if mode == "copy":
            return "copy"
        base = self.inner.unwrapped
        if self._protocol_layer() is not None:
            return "protocol"
        if _is_mujoco(base):
            return "mujoco"
        if _is_ale(base):
            return "ale"
        if _is_minatar(base):
            return "minatar"
        if _is_classic_control(base):
            return "classic_control"
        if mode == "state":
            raise EnvStateError(
                f"Env {_env_name(self.inner)} has no get_state()/set_state() and no built-in state support "
                f"(classic control, MuJoCo, ALE, MinAtar). {_ways_out(mode)} "
                "Or use state_mode='copy' for a verified deep copy."
            )
        return "copy"

    def _wrapped_layers(self, outer: bool) -> Iterator[gym.Wrapper]:
        """
        The wrappers whose state a snapshot copies by attribute: those above ``Monitor`` (``outer``: SB3's
        ``make_atari_env`` puts its wrappers there) or those between its inner env's top and the env with the base
        state.
        """
        if outer and self.monitor is None:  # no Monitor: every wrapper counts as below it
            return
        layer: gym.Env = self.env if outer else self.inner
        while isinstance(layer, gym.Wrapper) and not (layer is self.monitor if outer else _has_protocol(layer)):
            yield layer
            layer = layer.env

    def _wrapper_states(self, outer: bool = False) -> list[Any]:
        """
        State of the wrappers of :meth:`_wrapped_layers`: ``TimeLimit``'s elapsed steps, ``OrderEnforcing``'s reset
        flag, and the attributes of the wrappers of ``_stateful_wrappers()``.
        """
        states: list[Any] = []
        stateful = _stateful_wrappers()
        for layer in self._wrapped_layers(outer):
            if isinstance(layer, TimeLimit):
                states.append(layer._elapsed_steps)
            elif isinstance(layer, OrderEnforcing):
                states.append(layer._has_reset)
            elif type(layer) in stateful:
                states.append(
                    {name: copy.deepcopy(getattr(layer, name)) for name in stateful[type(layer)] if hasattr(layer, name)}
                )
        return states

    def _set_wrapper_states(self, states: list[Any], outer: bool = False) -> None:
        values = iter(states)
        stateful = _stateful_wrappers()
        for layer in self._wrapped_layers(outer):
            if isinstance(layer, TimeLimit):
                layer._elapsed_steps = next(values)
            elif isinstance(layer, OrderEnforcing):
                layer._has_reset = next(values)
            elif type(layer) in stateful:
                for name, value in next(values).items():
                    setattr(layer, name, copy.deepcopy(value))

    def _get_inner_state(self) -> Any:
        if self.backend == "copy":
            try:
                return copy.deepcopy(self.inner)
            except Exception as error:
                raise EnvStateError(
                    f"Env {_env_name(self.inner)} cannot be deep-copied: {error!r}. {_ways_out('copy')}"
                ) from error
        if self.backend == "protocol":
            return self._wrapper_states(), self._protocol_layer().get_state()  # type: ignore[union-attr]
        base = self.inner.unwrapped
        if self.backend == "mujoco":
            import mujoco

            # mjSTATE_INTEGRATION: the full physics state plus the solver's warm start, which makes the replay
            # bit-exact (FULLPHYSICS alone differs in the last bits after a few steps of contact dynamics)
            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            model, data = base.model, base.data  # type: ignore[attr-defined]  # a MujocoEnv
            state = np.empty(mujoco.mj_stateSize(model, spec))
            mujoco.mj_getState(model, data, state, spec)
            return self._wrapper_states(), state
        if self.backend == "ale":
            # the emulator without its system RNG: restored members keep drawing their own sticky actions (_reseed
            # gives them a common stream)
            return self._wrapper_states(), base.clone_state(include_rng=False)  # type: ignore[attr-defined]
        if self.backend == "minatar":
            # the game object (its random generator, shared by the game and its wrapper, left out: see _set_inner_state)
            game = base.game  # type: ignore[attr-defined]  # minatar.gym.BaseEnv
            return self._wrapper_states(), copy.deepcopy(game, memo={id(game.random): None})
        # classic control
        return self._wrapper_states(), {k: copy.deepcopy(getattr(base, k)) for k in _CLASSIC_CONTROL_ATTRS if hasattr(base, k)}

    def _set_inner_state(self, state: Any) -> None:
        if self.backend == "copy":
            restored = copy.deepcopy(state)
            # a fresh random stream, so that group members still differ by the env's own randomness
            restored.unwrapped._np_random = np.random.default_rng(self.rng.integers(2**63))
            self.inner = restored
            if self.monitor is not None:
                self.monitor.env = restored
            else:
                self.env = restored
            return
        wrapper_states, base_state = state
        self._set_wrapper_states(wrapper_states)
        if self.backend == "protocol":
            self._protocol_layer().set_state(base_state)  # type: ignore[union-attr]
            return
        base = self.inner.unwrapped
        if self.backend == "mujoco":
            import mujoco

            model, data = base.model, base.data  # type: ignore[attr-defined]  # a MujocoEnv
            mujoco.mj_setState(model, data, base_state, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(model, data)
            return
        if self.backend == "ale":
            base.restore_state(base_state)  # type: ignore[attr-defined]
            return
        if self.backend == "minatar":
            # a copy of the snapshot's game, with the env's own random generator where the snapshot had none
            random = base.game.random  # type: ignore[attr-defined]
            game = copy.deepcopy(base_state)
            game.random = game.env.random = random
            base.game = game  # type: ignore[attr-defined]
            return
        for key, value in base_state.items():
            setattr(base, key, copy.deepcopy(value))

    # the env's own random numbers: where each backend's env keeps them (the snapshots above leave them out)

    def _rng_state(self) -> Any:
        base = self.inner.unwrapped
        if self.backend == "ale":
            return base.clone_state(include_rng=True)  # type: ignore[attr-defined]  # the RNG is the emulator's
        if self.backend == "minatar":
            return base.game.random.get_state()  # type: ignore[attr-defined]
        return copy.deepcopy(base.np_random.bit_generator.state)

    def _set_rng_state(self, state: Any) -> None:
        base = self.inner.unwrapped
        if self.backend == "ale":
            base.restore_state(state)  # type: ignore[attr-defined]  # taken with the snapshot: the same emulator state
        elif self.backend == "minatar":
            base.game.random.set_state(state)  # type: ignore[attr-defined]
        else:
            base.np_random.bit_generator.state = state

    def _reseed(self, seed: int) -> None:
        """A new random stream from ``seed`` for the env's own random numbers (set_state's rng_seed)."""
        base = self.inner.unwrapped
        if self.backend == "ale":
            # the ALE seeds its system RNG only when the ROM is loaded (about 0.1 s): reseed, reload, then put the
            # emulator back where it was
            emulator = base.clone_state(include_rng=False)  # type: ignore[attr-defined]
            base.seed_game(seed)  # type: ignore[attr-defined]
            base.load_game()  # type: ignore[attr-defined]
            base.restore_state(emulator)  # type: ignore[attr-defined]
        elif self.backend == "minatar":
            base.game.seed(seed)  # type: ignore[attr-defined]  # the game's and its wrapper's generator
        else:
            base._np_random = np.random.default_rng(seed)

    def _monitor_state(self) -> Any:
        if self.monitor is None:
            return None
        return list(self.monitor.rewards), self.monitor.needs_reset

    def _set_monitor_state(self, state: Any) -> None:
        if self.monitor is not None and state is not None:
            rewards, needs_reset = state
            self.monitor.rewards = list(rewards)
            self.monitor.needs_reset = needs_reset

    # -- the protocol and GRPO's entry points ---------------------------------------------------------------

    @property
    def can_restore_mid_episode(self) -> bool:
        """Whether states visited in the middle of an episode can be restored (not in seed mode)."""
        return self.backend != "seed"

    def _check_usable(self) -> None:
        if self.restore_error is not None:
            raise EnvStateError(self.restore_error)

    def get_state(self) -> dict[str, Any]:
        """A snapshot of the current state, with the observation the env shows in it."""
        self._check_usable()
        if self.backend == "seed":
            raise EnvStateError(
                f"Env {_env_name(self.inner)} is in seed mode: only reset states can be shared (new_start_state()); "
                "states in the middle of an episode cannot be saved. Use start_states='reset' or a state mode."
            )
        if not hasattr(self, "_last_obs"):
            raise EnvStateError("RestorableEnv.get_state() called before reset()")
        return dict(
            inner=self._get_inner_state(),
            outer=self._wrapper_states(outer=True),
            monitor=self._monitor_state(),
            obs=copy.deepcopy(self._last_obs),
        )

    def set_state(self, state: dict[str, Any], fresh_time_limit: bool = False, rng_seed: int | None = None) -> Any:
        """
        Restore a snapshot from :meth:`get_state` or :meth:`new_start_state`; returns its observation.

        :param fresh_time_limit: Start a new episode from the restored state (the Go-Explore setting): ``TimeLimit``
            counts its steps from zero, and ``Monitor`` reports the episode's return and length from this state on.
            Otherwise the snapshot's step count and Monitor's rewards so far are restored with it.
        :param rng_seed: Seed the env's own random number generator after the restore (common random numbers: envs
            restored with the same state and seed differ only by the actions taken); by default the copy backend
            draws a fresh generator and the other backends keep the env's. The ALE seeds its RNG only when it loads
            the ROM: a restore with ``rng_seed`` reloads it (about 0.1 s)
        """
        self._check_usable()
        if self.backend == "seed":
            obs, _ = self.env.reset(seed=int(state["seed"]))
            self._last_obs = obs
            return obs
        self._set_inner_state(state["inner"])
        self._set_wrapper_states(state["outer"], outer=True)
        self._set_monitor_state(state["monitor"])
        if fresh_time_limit:
            layer = self.env
            while isinstance(layer, gym.Wrapper):
                if isinstance(layer, TimeLimit):
                    layer._elapsed_steps = 0  # type: ignore[assignment]  # gymnasium annotates it as None until reset
                layer = layer.env
            if self.monitor is not None:
                self.monitor.rewards = []
        if rng_seed is not None:
            self._reseed(rng_seed)
        self._last_obs = copy.deepcopy(state["obs"])
        return copy.deepcopy(state["obs"])

    def new_start_state(self) -> tuple[dict[str, Any], Any]:
        """Reset into a new start state drawn from the env's reset distribution: ``(snapshot, observation)``."""
        self._check_usable()
        if self.backend == "seed":
            seed = int(self.rng.integers(2**31 - 1))
            return {"seed": seed}, self.set_state({"seed": seed})
        obs, _ = self.reset()
        return self.get_state(), obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if kwargs.get("seed") is not None:
            # a seeded env gives seeded group starts (seed mode) and member RNGs (copy mode)
            self.rng = np.random.default_rng(kwargs["seed"])
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    # -- construction-time check ----------------------------------------------------------------------------

    def _rollout(self, actions: list[Any], outer: bool = False) -> list[tuple[Any, float, bool]]:
        """Step ``actions`` through the inner env, or through the whole stack (``outer``: wrappers above Monitor)."""
        out = []
        for action in actions:
            obs, reward, terminated, truncated, _ = (self.env if outer else self.inner).step(action)
            out.append((obs, float(reward), bool(terminated or truncated)))
            if terminated or truncated:
                break
        return out

    def _verify(self, n_steps: int) -> None:
        """Snapshot, step, restore, replay with the same actions and RNG state: the two must agree."""
        name = _env_name(self.inner)
        action_rng = np.random.default_rng(0)
        self.action_space.seed(int(action_rng.integers(2**31 - 1)))
        actions = [self.action_space.sample() for _ in range(n_steps)]
        try:
            if self.backend == "seed":
                first_obs, _ = self.inner.reset(seed=12345)
                first = self._rollout(actions)
                second_obs, _ = self.inner.reset(seed=12345)
                second = self._rollout(actions)
                same = _same(first_obs, second_obs) and _same_rollouts(first, second)
                if not _same(first_obs, second_obs):
                    reason = "reset(seed=s) is not deterministic: two resets with the same seed gave different observations"
                else:
                    reason = (
                        "reset(seed=s) is deterministic but step() is not: after two resets with the same seed, the same "
                        f"actions gave {_first_difference(first, second)} (randomness in step() that does not come from "
                        "the env's np_random, e.g. numpy's or Python's global generator)"
                    )
            else:
                # through the wrappers above Monitor too, where there are any (Monitor's bookkeeping restored with them)
                outer = any(True for _ in self._wrapped_layers(outer=True))
                (self.env if outer else self.inner).reset(seed=12345)
                self._rollout(actions[:2], outer)  # check a state in the middle of an episode, not only a reset state
                snapshot = self._get_inner_state(), self._wrapper_states(outer=True), self._monitor_state()
                rng_state = self._rng_state()
                first = self._rollout(actions, outer)
                self._set_inner_state(snapshot[0])
                self._set_wrapper_states(snapshot[1], outer=True)
                self._set_monitor_state(snapshot[2])
                self._set_rng_state(rng_state)
                second = self._rollout(actions, outer)
                same = _same_rollouts(first, second)
                reason = (
                    f"restoring a {self.backend} snapshot and replaying the same actions gave "
                    f"{_first_difference(first, second)}"
                )
        except EnvStateError:
            raise
        except Exception as error:
            raise EnvStateError(
                f"Env {name} cannot be restored with the {self.backend} backend: {error!r}. {_ways_out(self.backend)}"
            ) from error
        if not same:
            raise EnvStateError(f"Env {name} failed the restore check: {reason}. {_ways_out(self.backend)}")
        # the check leaves the inner env mid-episode: the caller resets before use (OrderEnforcing is satisfied)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    # an env that produces NaN at the same step after a restore is restored exactly
    return np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating))


def _first_difference(first: list[tuple[Any, float, bool]], second: list[tuple[Any, float, bool]]) -> str:
    """What differs first between two rollouts of the same actions, e.g. ``"a different reward at step 2"``."""
    for t, ((o1, r1, d1), (o2, r2, d2)) in enumerate(zip(first, second, strict=False)):
        what = [
            name for name, same in (("observation", _same(o1, o2)), ("reward", _same(r1, r2)), ("end", d1 == d2)) if not same
        ]
        if what:
            return f"a different {' and '.join(what)} at step {t + 1}"
    return f"episodes of different lengths ({len(first)} and {len(second)} steps)"


def _same_rollouts(first: list[tuple[Any, float, bool]], second: list[tuple[Any, float, bool]]) -> bool:
    return len(first) == len(second) and all(
        _same(o1, o2) and _same(r1, r2) and d1 == d2 for (o1, r1, d1), (o2, r2, d2) in zip(first, second, strict=True)
    )
