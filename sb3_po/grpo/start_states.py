"""
Where GRPO's groups start (``GRPO(start_states=...)``): each strategy owns its settings, checks them, and refuses
those it would ignore; :func:`make_start_states` builds the one a model asks for.

- ``"reset"`` (:class:`ResetStates`): every group from a new state of the env's reset distribution;
- ``"visited"`` (:class:`VisitedStates`): a fraction of groups from states visited in earlier rollouts, sampled
  uniformly, so that groups branch mid-episode;
- ``"frontier"`` (:class:`FrontierStates`): a fraction of groups from a Go-Explore archive, one state per cell of a
  grid over the observation space, rarely visited cells preferred (Ecoffet et al. 2021; for sparse rewards).

A group started from a saved state carries the state's elapsed steps with it unless ``fresh_time_limit``.
"""

from collections import deque
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.logger import Logger

from sb3_po.common.checks import check_choice, check_int
from sb3_po.common.vec_env_state import VecEnvStates

START_STATES = ("reset", "visited", "frontier")

# GRPO's defaults of the strategies' settings: a setting the chosen strategy does not use must keep its default
DEFAULTS: dict[str, Any] = dict(visited_fraction=0.5, visited_capture_prob=0.02, visited_pool_size=1000, frontier_cells=12)
_USED_BY = dict(
    visited_fraction="start_states='visited' and 'frontier'",
    visited_capture_prob="start_states='visited'",
    visited_pool_size="start_states='visited'",
    frontier_cells="start_states='frontier'",
)
_USES = dict(
    reset=(),
    visited=("visited_fraction", "visited_capture_prob", "visited_pool_size"),
    frontier=("visited_fraction", "frontier_cells"),
)


class StartStates:
    """Where groups start: a reset state (``draw`` returns None) or a state saved in earlier steps."""

    #: whether :meth:`observe` needs the states the members visit (the collector skips the call otherwise)
    observes = False

    def draw(self) -> Any:
        """A saved start state, or None for a new reset state."""
        return None

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray) -> None:
        """After a step: ``running`` are the slots whose member goes on from ``observations`` (their raw observations)."""

    def record(self, logger: Logger) -> None:
        """Log the strategy's state after a rollout (``rollout/...`` keys)."""


class ResetStates(StartStates):
    """``start_states="reset"``: every group starts from a new reset state."""


class VisitedStates(StartStates):
    """
    ``start_states="visited"``: a pool of states visited in earlier rollouts, sampled uniformly.

    :param fraction: The probability that a group starts from a visited state (else from a reset)
    :param capture_prob: The probability that a running member's state joins the pool at a step
    :param pool: The pool (a bounded deque, saved with the model)
    """

    observes = True

    def __init__(self, fraction: float, capture_prob: float, pool: deque):
        if not 0 <= fraction <= 1 or not 0 <= capture_prob <= 1:
            raise ValueError("visited_fraction and visited_capture_prob must lie in [0, 1]")
        self.fraction, self.capture_prob, self.pool = fraction, capture_prob, pool

    def draw(self) -> Any:
        if self.pool and np.random.random() < self.fraction:
            return self.pool[np.random.randint(len(self.pool))]
        return None

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray) -> None:
        """Each running slot joins the pool with probability ``capture_prob``."""
        chosen = running[np.random.random(len(running)) < self.capture_prob]
        for slot in chosen:
            self.pool.append(states.get_state(int(slot)))


class FrontierStates(StartStates):
    """
    ``start_states="frontier"``: one saved state per cell of a grid over the observation space, drawn with weight
    ``1 / sqrt(1 + visits)`` so that rarely visited cells, the edge of what the policy reaches, are preferred
    (Go-Explore, Ecoffet et al. 2021; restarts from visited states, Salimans and Chen 2018).

    :param fraction: The probability that a group starts from a frontier state (else from a reset)
    :param low: Lower bounds of the observations (finite)
    :param high: Upper bounds of the observations (finite)
    :param n_cells: Cells per observation dimension
    :param archive: ``{"visits": array of visits per cell, "states": {cell: state}}`` (saved with the model)
    """

    observes = True

    def __init__(self, fraction: float, low: np.ndarray, high: np.ndarray, n_cells: int, archive: dict[str, Any]):
        if not 0 <= fraction <= 1:
            raise ValueError("visited_fraction must lie in [0, 1]")
        self.fraction, self.n_cells, self.archive = fraction, n_cells, archive
        self.low, self.width = low.astype(np.float64), (high.astype(np.float64) - low) / n_cells
        self.visits: np.ndarray = archive["visits"]
        self.states: dict[int, Any] = archive["states"]

    def cells(self, observations: np.ndarray) -> np.ndarray:
        index = np.clip(((observations - self.low) / self.width).astype(np.int64), 0, self.n_cells - 1)
        return np.ravel_multi_index(index.T, (self.n_cells,) * index.shape[1])

    def draw(self) -> Any:
        if self.states and np.random.random() < self.fraction:
            cells = np.fromiter(self.states, dtype=np.int64, count=len(self.states))
            weights = 1.0 / np.sqrt(1.0 + self.visits[cells])
            return self.states[int(cells[np.random.choice(len(cells), p=weights / weights.sum())])]
        return None

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray) -> None:
        """Count the running slots' cells; a cell seen for the first time keeps the state that reached it."""
        if len(running) == 0:
            return
        cells = self.cells(np.asarray(observations)[running].reshape(len(running), -1))
        new = self.visits[cells] == 0
        np.add.at(self.visits, cells, 1)
        for cell, slot in zip(*np.unique(cells[new], return_index=True), strict=True):
            self.states[int(cell)] = states.get_state(int(running[new][slot]))

    def record(self, logger: Logger) -> None:
        logger.record("rollout/frontier_cells", len(self.states))


def check_start_states(kind: str, **settings: Any) -> None:
    """Refuse a start-state setting that ``kind`` would ignore (a value other than its default), naming its users."""
    check_choice("GRPO", "start_states", kind, START_STATES)
    for name, value in settings.items():
        if name not in _USES[kind] and value != DEFAULTS[name]:
            raise ValueError(f"GRPO: {name}={value!r} is used by {_USED_BY[name]}; start_states={kind!r} would ignore it")
    check_int("GRPO", "visited_pool_size", settings.get("visited_pool_size", 1), 1)
    check_int("GRPO", "frontier_cells", settings.get("frontier_cells", 1), 1)


def make_start_states(
    kind: str,
    observation_space: spaces.Space,
    visited_fraction: float = DEFAULTS["visited_fraction"],
    visited_capture_prob: float = DEFAULTS["visited_capture_prob"],
    visited_pool_size: int = DEFAULTS["visited_pool_size"],
    frontier_cells: int = DEFAULTS["frontier_cells"],
    pool: Any = (),
    archive: dict[str, Any] | None = None,
) -> StartStates:
    """
    The start-state strategy ``kind`` (``"reset"``, ``"visited"``, ``"frontier"``) with its settings, continuing a
    saved ``pool`` of visited states or frontier ``archive`` (a loaded model goes on with them).
    """
    check_start_states(
        kind,
        visited_fraction=visited_fraction,
        visited_capture_prob=visited_capture_prob,
        visited_pool_size=visited_pool_size,
        frontier_cells=frontier_cells,
    )
    if kind == "visited":
        return VisitedStates(visited_fraction, visited_capture_prob, deque(pool, maxlen=visited_pool_size))
    if kind == "frontier":
        space = observation_space
        if not isinstance(space, spaces.Box) or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(
                f"start_states='frontier' needs a bounded Box observation space for its grid of cells, got {space}. "
                "Use start_states='visited', or wrap the env so that its observations are bounded."
            )
        n_cells = frontier_cells ** int(np.prod(space.shape))
        if n_cells > 10**7:
            raise ValueError(f"frontier_cells={frontier_cells} makes {n_cells} cells over {space}: lower it")
        if archive is None:
            archive = dict(visits=np.zeros(n_cells, dtype=np.int64), states={})
        return FrontierStates(visited_fraction, space.low.reshape(-1), space.high.reshape(-1), frontier_cells, archive)
    return ResetStates()
