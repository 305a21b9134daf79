"""
Where GRPO's groups start (``GRPO(start_states=...)``): each strategy owns its settings, checks them, and refuses
those it would ignore; :func:`make_start_states` builds the one a model asks for.

- ``"reset"`` (:class:`ResetStates`): every group from a new state of the env's reset distribution;
- ``"visited"`` (:class:`VisitedStates`): a fraction of groups from states visited in earlier rollouts, sampled
  uniformly, so that groups branch mid-episode;
- ``"frontier"`` (:class:`FrontierStates`): a fraction of groups from a Go-Explore archive, the best state of each
  cell of a grid over the observed range of the observations, rarely seen cells preferred (Ecoffet et al. 2021; for
  sparse rewards); optionally a share of those draws takes the backward step (Salimans and Chen 2018): the cells
  one step before the cells the best episodes passed through.

A group started from a saved state carries the state's elapsed steps with it unless ``fresh_time_limit`` (GRPO's
default with ``"frontier"``).
"""

import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.preprocessing import is_image_space

from sb3_po.common.checks import check_choice, check_int
from sb3_po.common.vec_env_state import VecEnvStates

START_STATES = ("reset", "visited", "frontier")

# GRPO's defaults of the strategies' settings: a setting the chosen strategy does not use must keep its default
DEFAULTS: dict[str, Any] = dict(
    visited_fraction=0.5,
    visited_capture_prob=0.02,
    visited_pool_size=1000,
    frontier_cells=12,
    frontier_explore_steps=0,
    frontier_backward=0.5,
)
_USED_BY = dict(
    visited_fraction="start_states='visited' and 'frontier'",
    visited_capture_prob="start_states='visited'",
    visited_pool_size="start_states='visited'",
    frontier_cells="start_states='frontier'",
    frontier_explore_steps="start_states='frontier'",
    frontier_backward="start_states='frontier'",
)
_USES = dict(
    reset=(),
    visited=("visited_fraction", "visited_capture_prob", "visited_pool_size"),
    frontier=("visited_fraction", "frontier_cells", "frontier_explore_steps", "frontier_backward"),
)


# "No cell" (a reset state, or a slot without a member): cells are grid indices or 64-bit hashes (any int64), so the
# smallest int64 stands for none (a hash meets it with a chance of 2^-64)
NO_CELL = -(2**63)


def lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Where each of ``keys`` is in ``sorted_keys`` (an archive's cells, kept sorted): the index of each key's entry and
    whether it is there (where not, the index is a valid one to read and must not be used).
    """
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, sorted_keys[at] == keys


class Start(NamedTuple):
    """A saved start state drawn for a group, with what it took to get there from a reset (where known)."""

    state: Any
    score: float = 0.0  # the return (raw rewards) from a reset to the state
    length: int = 0  # the env steps from that reset
    explore_steps: int = 0  # uniformly random actions to take from the state before the group starts (Go-Explore)
    cell: int = NO_CELL  # the archive cell of the state (NO_CELL: none, a reset state)


class StartStates:
    """Where groups start: a reset state (``draw`` returns None) or a state saved in earlier steps."""

    #: whether :meth:`observe` needs the states the members visit (the collector skips the call otherwise)
    observes = False

    def draw(self) -> Start | None:
        """A saved start state, or None for a new reset state."""
        return None

    def begin(self, slots: list[int], score: float, length: int, cell: int = NO_CELL) -> None:
        """
        Members start in ``slots`` from a state reached from a reset with return ``score`` in ``length`` steps, in
        the strategy's ``cell`` (:data:`NO_CELL`: none known, e.g. a reset state).
        """

    def origin(self, slot: int) -> tuple[float, int]:
        """The return and steps from a reset of the member running in ``slot`` (where the strategy tracks them)."""
        return 0.0, 0

    def cell(self, slot: int) -> int:
        """The strategy's cell of the state the member in ``slot`` is in (:data:`NO_CELL`: none)."""
        return NO_CELL

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray, rewards: np.ndarray) -> None:
        """
        After a step: ``running`` are the slots whose member goes on from ``observations`` (their raw observations);
        ``rewards`` are every slot's raw rewards of the step.
        """

    def finish(self, slots: np.ndarray, rewards: np.ndarray) -> None:
        """The members in ``slots`` ended their episodes (``observes`` only); ``rewards``: every slot's last rewards."""

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

    def draw(self) -> Start | None:
        if self.pool and np.random.random() < self.fraction:
            return Start(self.pool[np.random.randint(len(self.pool))])
        return None

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray, rewards: np.ndarray) -> None:
        """Each running slot joins the pool with probability ``capture_prob``."""
        chosen = running[np.random.random(len(running)) < self.capture_prob]
        for slot in chosen:
            self.pool.append(states.get_state(int(slot)))


# Go-Explore's count weights (Ecoffet et al. 2019, arXiv 1901.10995, its appendix on cell selection: weight 0.1 on
# times chosen, 0 on times chosen since the cell led to a new one, 0.3 on times seen, each over the square root of
# the count plus 0.001, plus 0.00001): a cell's selection weight is
# 0.1 / sqrt(times chosen + 0.001) + 0.3 / sqrt(times seen + 0.001) + 0.00001. A cell never chosen weighs about 3.2,
# one chosen once at most 0.4: every new cell is tried soon, then the rarely seen and rarely chosen are preferred
CHOSEN_WEIGHT, SEEN_WEIGHT, COUNT_EPSILON, WEIGHT_EPSILON = 0.1, 0.3, 0.001, 0.00001
# The archive's size limit: past it the grid is made coarser (half the cells per dimension), merging cells, as
# Go-Explore's dynamic downscaling keeps its number of cells in bounds
FRONTIER_MAX_CELLS = 10_000
# The backward step's cells of the best episodes: those whose best episode return lies in the upper half between the
# archive's median and its best (so a single lucky episode does not make its whole path look like the best one)
BEST_EPISODES_QUANTILE = 0.5
# When an observation falls outside the range the cells are cut from, the range grows to it and a quarter more
# (geometric growth: a handful of re-binnings while the policy reaches further)
RANGE_MARGIN = 0.25


@dataclass
class FrontierArchive:
    """
    The frontier's archive (saved with the model): one entry per cell of a grid cut from the observed range of the
    observations, each with the best state that reached the cell.

    :param n_cells: Cells per observation dimension now (``frontier_cells``, halved each time the archive outgrew
        :data:`FRONTIER_MAX_CELLS`)
    :param low: Lower end of the range of each observation dimension the cells are cut from (None: nothing seen yet)
    :param high: Upper end of that range
    :param keys: The cell of each entry (its index in the grid)
    :param observations: The raw observation of each entry's state (to re-bin when the range grows)
    :param scores: The return from a reset to each entry's state (the sum of raw rewards, through earlier restarts)
    :param lengths: The env steps from that reset to the state
    :param seen: How often a running member was in each cell
    :param chosen: How often each entry was drawn as a start state
    :param states: Each entry's saved env state
    :param parents: The cell each entry's state was reached from (the step before on the path to it; NO_CELL: a reset)
    :param finals: The best episode return (raw rewards from a reset, through earlier restarts) of an episode that
        passed through each cell (-inf: none ended yet)
    """

    n_cells: int
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    observations: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chosen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    states: list[Any] = field(default_factory=list)
    parents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    finals: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.states)

    def weights(self, entries: np.ndarray | None = None) -> np.ndarray:
        """
        Each entry's selection probability (Go-Explore's count weights, normalised), over ``entries`` only where
        given (in their order).
        """
        chosen, seen = (self.chosen, self.seen) if entries is None else (self.chosen[entries], self.seen[entries])
        w = CHOSEN_WEIGHT / np.sqrt(chosen + COUNT_EPSILON) + SEEN_WEIGHT / np.sqrt(seen + COUNT_EPSILON)
        w = w + WEIGHT_EPSILON
        return w / w.sum()

    def best_episodes(self) -> np.ndarray:
        """
        Whether each cell lies on the best episodes: its best episode return (``finals``) is in the upper half
        between the median over the cells some episode ended through and the best (none while they all agree).
        """
        ended = np.isfinite(self.finals)
        if not ended.any():
            return ended
        best, median = self.finals[ended].max(), np.median(self.finals[ended])
        if best <= median:
            return np.zeros(len(self), dtype=bool)
        return ended & (self.finals >= median + BEST_EPISODES_QUANTILE * (best - median))

    def backward_step(self) -> np.ndarray:
        """
        The backward step of Salimans and Chen (2018): the entries one step before the best episodes' cells (the
        parents of :meth:`best_episodes`' cells) that are not such cells themselves, as entry indices. A group
        started there has one step to learn before it joins a path the policy already follows to the best return.
        """
        on_best = self.best_episodes()
        entry, found = lookup(self.keys, np.unique(self.parents[on_best]))  # NO_CELL is no entry's key
        entry = entry[found]
        return np.unique(entry[~on_best[entry]])


def cell_multipliers(n_cells: int, n_dims: int) -> np.ndarray:
    """
    The cell of a row of per-dimension cell indices is their dot product with these: the index in the grid (powers of
    ``n_cells``) while it fits in 63 bits, else a hash (fixed random odd multipliers, products wrapping modulo 2^64:
    two cells share a key with a chance of about 2^-63), as for one-hot observations of many dimensions.
    """
    if n_dims * np.log2(max(n_cells, 2)) <= 62:
        return n_cells ** np.arange(n_dims, dtype=np.int64)
    return np.random.default_rng(0).integers(-(2**62), 2**62, size=n_dims, dtype=np.int64) * 2 + 1


def better(score: np.ndarray, length: np.ndarray, than_score: np.ndarray, than_length: np.ndarray) -> np.ndarray:
    """Go-Explore's rule for the state a cell keeps: a higher score, or the same score reached in fewer steps."""
    return (score > than_score) | ((score == than_score) & (length < than_length))


class FrontierStates(StartStates):
    """
    ``start_states="frontier"``: Go-Explore's archive (Ecoffet et al. 2019, 2021; restarts from visited states,
    Salimans and Chen 2018). The observations are cut into a grid of ``n_cells`` cells per dimension over the range
    they have been seen in (a running min / max: bounded or not, no per-env bounds); each cell keeps the best state
    that reached it (highest return from a reset, then fewest steps), and a cell is drawn with Go-Explore's count
    weights, rarely seen and rarely chosen cells first. The grid is made coarser when the archive outgrows
    :data:`FRONTIER_MAX_CELLS`.

    :param fraction: The probability that a group starts from a frontier state (else from a reset)
    :param n_dims: Values per observation
    :param n_cells: Cells per observation dimension
    :param archive: The archive to go on with (a loaded model's), or None for a new one
    :param explore_steps: Uniformly random actions from a drawn state before the group starts there (Go-Explore)
    :param backward: The share of draws from the archive that take the backward step (:meth:`FrontierArchive.
        backward_step`; the others, and all while it has no entries, by Go-Explore's count weights over every cell)
    """

    observes = True

    def __init__(
        self,
        fraction: float,
        n_dims: int,
        n_cells: int,
        archive: FrontierArchive | None = None,
        explore_steps: int = 0,
        backward: float = 0.0,
    ):
        if not 0 <= fraction <= 1:
            raise ValueError("visited_fraction must lie in [0, 1]")
        if not 0 <= backward <= 1:
            raise ValueError("frontier_backward must lie in [0, 1]")
        self.fraction, self.n_dims, self.explore_steps, self.backward = fraction, n_dims, explore_steps, backward
        self.archive = FrontierArchive(n_cells) if archive is None else archive
        if self.archive.observations.shape[1:] != (n_dims,):
            self.archive.observations = np.zeros((0, n_dims))
        # the return and steps from a reset of the member in each slot (slots are sized on the first observation)
        self.slot_score, self.slot_length = np.zeros(0), np.zeros(0, dtype=np.int64)
        # each slot's cell now (NO_CELL: none) and the cells its member's episode passed through (its start's first)
        self.slot_cell = np.zeros(0, dtype=np.int64)
        self.paths, self.path_length = np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None  # cells()'s terms for the grid now; None: stale

    def cells(self, observations: np.ndarray) -> np.ndarray:
        """The cell (index in the grid) of each row of ``observations``."""
        archive = self.archive
        assert archive.low is not None
        if self._grid is None:  # the grid changed (range or cells per dimension): cache its terms
            span = archive.high - archive.low
            scale = archive.n_cells / np.where(span > 0, span, np.inf)  # a dimension seen at one value: cell 0
            self._grid = (scale, cell_multipliers(archive.n_cells, self.n_dims))
        scale, powers = self._grid
        index = np.clip(((observations - archive.low) * scale).astype(np.int64), 0, archive.n_cells - 1)
        return index @ powers

    def draw(self) -> Start | None:
        archive = self.archive
        if not len(archive) or np.random.random() >= self.fraction:
            return None
        entries = archive.backward_step() if self.backward and np.random.random() < self.backward else np.zeros(0)
        if len(entries):
            entry = int(np.random.choice(entries, p=archive.weights(entries)))
        else:
            entry = int(np.random.choice(len(archive), p=archive.weights()))
        archive.chosen[entry] += 1
        return Start(
            archive.states[entry],
            float(archive.scores[entry]),
            int(archive.lengths[entry]),
            self.explore_steps,
            int(archive.keys[entry]),
        )

    def begin(self, slots: list[int], score: float, length: int, cell: int = NO_CELL) -> None:
        self._size_slots(max(slots) + 1)
        self.slot_score[slots], self.slot_length[slots], self.slot_cell[slots] = score, length, cell
        self.path_length[slots] = 0
        if cell != NO_CELL:
            self._extend_paths(np.asarray(slots), np.full(len(slots), cell))

    def origin(self, slot: int) -> tuple[float, int]:
        return float(self.slot_score[slot]), int(self.slot_length[slot])

    def cell(self, slot: int) -> int:
        return int(self.slot_cell[slot])

    def finish(self, slots: np.ndarray, rewards: np.ndarray) -> None:
        """Each cell the ended episodes passed through keeps the best episode return (from a reset) through it."""
        archive = self.archive
        for slot in slots:
            entry, found = lookup(archive.keys, self.paths[slot, : self.path_length[slot]])
            np.maximum.at(archive.finals, entry[found], self.slot_score[slot] + rewards[slot])
            self.path_length[slot] = 0

    def observe(self, states: VecEnvStates, observations: Any, running: np.ndarray, rewards: np.ndarray) -> None:
        """Count the running slots' cells; a new cell keeps the best state that reached it, a known one a better one."""
        self._size_slots(len(rewards))
        self.slot_score[running] += rewards[running]
        self.slot_length[running] += 1
        if len(running) == 0:
            return
        obs = np.asarray(observations, dtype=np.float64)[running].reshape(len(running), -1)
        archive = self.archive
        if archive.low is None or (obs < archive.low).any() or (obs > archive.high).any():
            self._widen(obs)
        cells = self.cells(obs)
        score, length, parents = self.slot_score[running], self.slot_length[running], self.slot_cell[running]
        self.slot_cell[running] = cells
        self._extend_paths(running, cells)
        entry, known = lookup(archive.keys, cells)  # the archive is sorted by cell
        if known.any():
            np.add.at(archive.seen, entry[known], 1)
            # known cells reached by a better path: the best such member of each cell replaces its state
            improves = np.flatnonzero(known & better(score, length, archive.scores[entry], archive.lengths[entry]))
            for i in improves[np.lexsort((length[improves], -score[improves]))]:
                e = entry[i]
                if better(score[i], length[i], archive.scores[e], archive.lengths[e]):
                    archive.states[e] = states.get_state(int(running[i]))
                    archive.observations[e], archive.scores[e], archive.lengths[e] = obs[i], score[i], length[i]
                    archive.parents[e] = parents[i]
        # new cells: the best member in each keeps its state
        new = np.flatnonzero(~known)
        if len(new):
            new = new[np.lexsort((length[new], -score[new]))]
            _, at, counts = np.unique(cells[new], return_index=True, return_counts=True)
            first = new[at]
            self._append(
                cells[first],
                obs[first],
                score[first],
                length[first],
                counts,
                [states.get_state(int(running[i])) for i in first],
                parents[first],
            )
            while len(archive) > FRONTIER_MAX_CELLS and archive.n_cells > 1:
                archive.n_cells = max(1, archive.n_cells // 2)
                self._rebin()

    def record(self, logger: Logger) -> None:
        logger.record("rollout/frontier_cells", len(self.archive))
        if self.backward:
            logger.record("rollout/frontier_best_cells", int(self.archive.best_episodes().sum()))
            logger.record("rollout/frontier_backward_cells", len(self.archive.backward_step()))

    def _size_slots(self, n: int) -> None:
        if len(self.slot_score) < n:
            grow = n - len(self.slot_score)
            self.slot_score = np.concatenate([self.slot_score, np.zeros(grow)])
            self.slot_length = np.concatenate([self.slot_length, np.zeros(grow, dtype=np.int64)])
            self.slot_cell = np.concatenate([self.slot_cell, np.full(grow, NO_CELL, dtype=np.int64)])
            self.paths = np.concatenate([self.paths, np.zeros((grow, self.paths.shape[1]), dtype=np.int64)])
            self.path_length = np.concatenate([self.path_length, np.zeros(grow, dtype=np.int64)])

    def _extend_paths(self, slots: np.ndarray, cells: np.ndarray) -> None:
        """Append ``cells`` to the paths of ``slots`` (the paths' room doubles when one is full)."""
        if self.path_length[slots].max(initial=0) >= self.paths.shape[1]:
            room = max(64, 2 * self.paths.shape[1])
            self.paths = np.concatenate([self.paths, np.zeros((len(self.paths), room), dtype=np.int64)], axis=1)
        self.paths[slots, self.path_length[slots]] = cells
        self.path_length[slots] += 1

    def _append(
        self,
        keys: np.ndarray,
        observations: np.ndarray,
        scores: np.ndarray,
        lengths: np.ndarray,
        seen: np.ndarray,
        states: list[Any],
        parents: np.ndarray,
    ) -> None:
        archive = self.archive
        archive.parents = np.concatenate([archive.parents, parents])
        archive.finals = np.concatenate([archive.finals, np.full(len(keys), -np.inf)])
        archive.keys = np.concatenate([archive.keys, keys])
        archive.observations = np.concatenate([archive.observations, observations])
        archive.scores = np.concatenate([archive.scores, scores])
        archive.lengths = np.concatenate([archive.lengths, lengths])
        archive.seen = np.concatenate([archive.seen, seen])
        archive.chosen = np.concatenate([archive.chosen, np.zeros(len(keys), dtype=np.int64)])
        archive.states.extend(states)
        order = np.argsort(archive.keys, kind="stable")  # kept sorted by cell for the lookups
        self._take(order)

    def _take(self, entries: np.ndarray) -> None:
        """Keep the archive's ``entries``, in that order."""
        archive = self.archive
        archive.keys, archive.observations = archive.keys[entries], archive.observations[entries]
        archive.scores, archive.lengths = archive.scores[entries], archive.lengths[entries]
        archive.seen, archive.chosen = archive.seen[entries], archive.chosen[entries]
        archive.parents, archive.finals = archive.parents[entries], archive.finals[entries]
        archive.states = [archive.states[i] for i in entries]

    def _widen(self, observations: np.ndarray) -> None:
        """Grow the range to cover ``observations`` (and a margin on each side that grew), then re-bin."""
        archive = self.archive
        low, high = observations.min(axis=0), observations.max(axis=0)
        if archive.low is None or archive.high is None:
            archive.low, archive.high = low, high
        else:
            new_low, new_high = np.minimum(archive.low, low), np.maximum(archive.high, high)
            margin = RANGE_MARGIN * (new_high - new_low)
            archive.low = np.where(new_low < archive.low, new_low - margin, archive.low)
            archive.high = np.where(new_high > archive.high, new_high + margin, archive.high)
        self._rebin()

    def _rebin(self) -> None:
        """Recompute every entry's cell; entries that now share a cell merge (the better state, summed counts)."""
        archive = self.archive
        self._grid = None
        if not len(archive):
            return
        old_keys, keys = archive.keys, self.cells(archive.observations)
        order = np.lexsort((archive.lengths, -archive.scores, keys))  # by cell, the best entry first
        unique, first, inverse = np.unique(keys[order], return_index=True, return_inverse=True)
        seen, chosen = np.zeros(len(unique), dtype=np.int64), np.zeros(len(unique), dtype=np.int64)
        finals = np.full(len(unique), -np.inf)
        np.add.at(seen, inverse, archive.seen[order])
        np.add.at(chosen, inverse, archive.chosen[order])
        np.maximum.at(finals, inverse, archive.finals[order])
        self._take(order[first])  # sorted by cell: np.unique's order
        archive.keys, archive.seen, archive.chosen, archive.finals = unique, seen, chosen, finals

        def renamed(old: np.ndarray) -> np.ndarray:
            """Old cells' keys as the new grid's (an entry's cell: its observation's; unknown keys: NO_CELL)."""
            at, found = lookup(old_keys, old)
            return np.where(found, keys[at], NO_CELL)

        archive.parents = renamed(archive.parents)
        self.slot_cell = renamed(self.slot_cell)
        self.paths = renamed(self.paths)


# The built-in estimators that divide by a std (``scale_rewards``); outcome only with advantage="mean_std"
SCALING_SUPERVISIONS = ("step_mean", "step_rloo", "process")


def default_scale_rewards(kind: str, supervision: Any, advantage: str) -> str:
    """
    GRPO's ``scale_rewards`` when left at None: ``"none"`` with the frontier (``kind="frontier"``) where the estimator
    scales (the built-in per-step estimators and ``process``; ``outcome`` with ``advantage="mean_std"``), else
    ``"group"``. On a sparse task most groups' members all miss the reward and differ only by small costs (the deep
    sea's cost of moving right); divided by the group's std those become as large as the reward and teach the policy
    to avoid the way to it before the archive gets there (issue 32's deep-sea probe).
    """
    scales = supervision in SCALING_SUPERVISIONS or (supervision == "outcome" and advantage == "mean_std")
    return "none" if kind == "frontier" and scales else "group"


# GRPO's settings whose default (None) depends on the start states: (away from the frontier, with it). With the
# frontier, issue 32's sparse tasks chose them (the ablations page's frontier table)
START_STATE_DEFAULTS: dict[str, tuple[Any, Any]] = dict(ent_coef=(0.0, 0.01), n_epochs=(10, 20))


def default_setting(name: str, kind: str) -> Any:
    """
    GRPO's ``name`` (a key of :data:`START_STATE_DEFAULTS`) when left at None, with start states ``kind``.
    ``ent_coef``: 0.01 with the frontier. On a sparse task the groups whose members all miss the reward carry no
    gradient toward it (all of them, before the first success), and the bonus keeps the policy from turning
    deterministic before the archive reaches the reward (issue 32, at 10 epochs: the deep sea solved on 3 seeds of 3
    with it, at 80k-90k; on 2 of 3 at 140k-160k without). ``n_epochs``: 20 with the frontier: few groups have spread (a
    member that found the reward), and more passes take more from them (issue 32: with both, MountainCar-v0 at -110
    on 5 seeds of 5; with the bonus alone on 3).
    """
    away, frontier = START_STATE_DEFAULTS[name]
    return frontier if kind == "frontier" else away


def check_start_states(kind: str, **settings: Any) -> None:
    """Refuse a start-state setting that ``kind`` would ignore (a value other than its default), naming its users."""
    check_choice("GRPO", "start_states", kind, START_STATES)
    for name, value in settings.items():
        if name not in _USES[kind] and value != DEFAULTS[name]:
            raise ValueError(f"GRPO: {name}={value!r} is used by {_USED_BY[name]}; start_states={kind!r} would ignore it")
    check_int("GRPO", "visited_pool_size", settings.get("visited_pool_size", 1), 1)
    check_int("GRPO", "frontier_cells", settings.get("frontier_cells", 1), 1)
    check_int("GRPO", "frontier_explore_steps", settings.get("frontier_explore_steps", 0), 0)


def make_start_states(
    kind: str,
    observation_space: spaces.Space,
    visited_fraction: float = DEFAULTS["visited_fraction"],
    visited_capture_prob: float = DEFAULTS["visited_capture_prob"],
    visited_pool_size: int = DEFAULTS["visited_pool_size"],
    frontier_cells: int = DEFAULTS["frontier_cells"],
    frontier_explore_steps: int = DEFAULTS["frontier_explore_steps"],
    frontier_backward: float = DEFAULTS["frontier_backward"],
    pool: Any = (),
    archive: Any = None,
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
        frontier_explore_steps=frontier_explore_steps,
        frontier_backward=frontier_backward,
    )
    if kind == "visited":
        return VisitedStates(visited_fraction, visited_capture_prob, deque(pool, maxlen=visited_pool_size))
    if kind == "frontier":
        space = observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(
                f"start_states='frontier' cuts a grid of cells over a Box observation space, got {space}. "
                "Use start_states='visited', or wrap the env so that its observations are a Box."
            )
        if is_image_space(space, check_channels=False):
            raise ValueError(
                f"start_states='frontier' cuts cells from each observation value; over images ({space}) every frame "
                "would be a cell of its own. Use start_states='visited' (or branch_states) with image observations."
            )
        n_dims = int(np.prod(space.shape))
        if archive is not None and not isinstance(archive, FrontierArchive):
            warnings.warn(
                "GRPO: the saved frontier archive has an older format (a grid over the observation space's bounds); "
                "the loaded model starts a new archive",
                stacklevel=3,
            )
            archive = None
        if archive is not None and not hasattr(archive, "finals"):
            warnings.warn(
                "GRPO: the saved frontier archive predates the backward step (no parents or episode returns per "
                "cell); the loaded model starts a new archive",
                stacklevel=3,
            )
            archive = None
        return FrontierStates(visited_fraction, n_dims, frontier_cells, archive, frontier_explore_steps, frontier_backward)
    return ResetStates()
