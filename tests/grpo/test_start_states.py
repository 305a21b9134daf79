"""The frontier archive (sb3_po/grpo/start_states.py): cells over the observed range, the best state per cell, Go-Explore's
count weights, re-binning and coarsening, checked by hand on a few observations."""

import numpy as np
import pytest
from gymnasium import spaces

from sb3_po.grpo import start_states
from sb3_po.grpo.start_states import NO_CELL, FrontierStates, make_start_states


class Slots:
    """Stands in for VecEnvStates: the state of a slot is what the test put there."""

    def __init__(self, n: int):
        self.state = [None] * n

    def get_state(self, slot: int):
        return self.state[slot]


def frontier(n_cells=4, n_dims=1):
    return make_start_states("frontier", spaces.Box(-np.inf, np.inf, (n_dims,)), visited_fraction=1.0, frontier_cells=n_cells)


def step(strategy, slots, observations, rewards, states):
    """One env step of every slot: each reaches ``observations[i]`` (state ``states[i]``) with ``rewards[i]``."""
    slots.state = list(states)
    n = len(observations)
    strategy.observe(slots, np.asarray(observations, dtype=float).reshape(n, -1), np.arange(n), np.asarray(rewards, float))


def test_cells_are_cut_from_the_observed_range_and_each_keeps_one_state():
    strategy, slots = frontier(n_cells=4), Slots(3)
    strategy.begin([0, 1, 2], 0.0, 0)
    step(strategy, slots, [0.0, 1.0, 0.3], [0, 0, 0], ["a", "b", "c"])
    archive = strategy.archive
    assert archive.low == pytest.approx([0.0]) and archive.high == pytest.approx([1.0])
    # cells of width 0.25 over [0, 1]: 0.0 -> 0, 0.3 -> 1, 1.0 -> 3 (the top edge belongs to the last cell)
    assert archive.keys.tolist() == [0, 1, 3] and archive.states == ["a", "c", "b"]
    assert archive.seen.tolist() == [1, 1, 1] and archive.lengths.tolist() == [1, 1, 1]
    # the range grows by the new extreme and a quarter of the new span: [0, 2] -> high 2 + 0.5 = 2.5
    step(strategy, slots, [2.0, 0.1, 0.1], [0, 0, 0], ["d", "e", "f"])
    assert archive.high == pytest.approx([2.5])
    # cells of width 0.625 now: 0.0, 0.1 and 0.3 share cell 0 (merged: the first, "a", has the shortest path), 1.0
    # is cell 1, 2.0 is cell 3; seen counts add up over the merge
    assert archive.keys.tolist() == [0, 1, 3] and archive.states == ["a", "b", "d"]
    assert archive.seen.tolist() == [4, 1, 1]


def test_a_cell_keeps_the_best_state_that_reached_it():
    strategy, slots = frontier(n_cells=2), Slots(2)
    strategy.begin([0, 1], 0.0, 0)
    step(strategy, slots, [0.0, 1.0], [0.0, 0.0], ["start", "far"])
    # slot 1 comes back to cell 0 with a higher return: its state replaces the first one
    step(strategy, slots, [1.0, 0.0], [0.0, 5.0], ["x", "better"])
    archive = strategy.archive
    assert archive.states == ["better", "far"] and archive.scores.tolist() == [5.0, 0.0]
    # the same return with fewer steps from the reset also wins; a lower return or a longer path does not
    strategy.begin([0], 5.0, 0)  # a member restored from a state reached with return 5 in 0 steps
    step(strategy, slots, [0.0, 0.0], [0.0, -1.0], ["shorter", "worse"])
    assert archive.states[0] == "shorter" and archive.lengths[0] == 1 and archive.scores[0] == 5.0


def test_a_restarted_member_carries_the_return_and_steps_of_its_start_state():
    strategy, slots = frontier(n_cells=4), Slots(1)
    strategy.begin([0], 0.0, 0)
    step(strategy, slots, [0.0], [1.0], ["s0"])
    step(strategy, slots, [1.0], [2.0], ["s1"])
    start = strategy.draw()
    assert start is not None
    strategy.begin([0], start.score, start.length)
    step(strategy, slots, [start.score + 10.0], [4.0], ["s2"])  # a new cell, beyond the range
    archive = strategy.archive
    entry = archive.states.index("s2")
    assert archive.scores[entry] == start.score + 4.0 and archive.lengths[entry] == start.length + 1


def test_draws_follow_go_explores_count_weights():
    strategy, slots = frontier(n_cells=8), Slots(4)
    strategy.begin([0, 1, 2, 3], 0.0, 0)
    step(strategy, slots, [0.0, 1.0, 2.0, 3.0], [0, 0, 0, 0], list("abcd"))
    archive = strategy.archive
    archive.seen[:] = [1, 3, 8, 99]
    archive.chosen[:] = [15, 0, 3, 0]
    # Go-Explore's numbers, written out: 0.1 / sqrt(chosen + 0.001) + 0.3 / sqrt(seen + 0.001) + 0.00001
    expected = 0.1 / np.sqrt(archive.chosen + 0.001) + 0.3 / np.sqrt(archive.seen + 0.001) + 0.00001
    np.testing.assert_allclose(archive.weights(), expected / expected.sum())
    # a cell never chosen outweighs every cell chosen before, however rarely seen (cells 1 and 3 against 0 and 2)
    weights = archive.weights()
    assert min(weights[1], weights[3]) > 5 * max(weights[0], weights[2])
    chosen_before = archive.chosen.copy()
    np.random.seed(0)
    draws = [strategy.draw().state for _ in range(4000)]
    assert (archive.chosen - chosen_before).sum() == 4000  # each draw counts as a choice of its cell
    # the empirical frequencies track the weights as they change with the choices: the rarely seen cell leads
    frequencies = np.array([draws.count(x) for x in "abcd"]) / len(draws)
    assert frequencies.argmax() == 0 and frequencies[3] == frequencies.min()


def test_the_grid_is_made_coarser_when_the_archive_outgrows_its_limit(monkeypatch):
    monkeypatch.setattr(start_states, "FRONTIER_MAX_CELLS", 10)
    strategy, slots = frontier(n_cells=16), Slots(16)
    strategy.begin(list(range(16)), 0.0, 0)
    step(strategy, slots, np.arange(16.0), np.zeros(16), list(range(16)))
    archive = strategy.archive
    # 16 values in 16 cells are more than 10: the grid halves to 8 cells, each holding two values (the lower one
    # kept: same return, same steps, first in order)
    assert archive.n_cells == 8 and len(archive) == 8
    assert archive.states == [0, 2, 4, 6, 8, 10, 12, 14] and archive.seen.tolist() == [2] * 8


def test_observations_of_several_dimensions_index_one_cell_each():
    strategy, slots = frontier(n_cells=3, n_dims=2), Slots(3)
    strategy.begin([0, 1, 2], 0.0, 0)
    step(strategy, slots, [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [0, 0, 0], ["o", "x", "y"])
    # index = x cell + 3 * y cell
    assert strategy.archive.keys.tolist() == [0, 2, 6] and strategy.archive.states == ["o", "x", "y"]


def test_many_dimensions_hash_their_cells():
    # 80 one-hot dimensions x 12 cells do not fit an index in 63 bits: the cells are hashed, distinct ones kept apart
    strategy, slots = frontier(n_cells=12, n_dims=80), Slots(80)
    strategy.begin(list(range(80)), 0.0, 0)
    one_hot = np.eye(80)
    step(strategy, slots, one_hot, np.zeros(80), list(range(80)))
    step(strategy, slots, one_hot[::-1], np.zeros(80), list(range(80, 160)))  # the same cells again
    archive = strategy.archive
    assert len(archive) == 80 and sorted(archive.states) == list(range(80)) and archive.seen.tolist() == [2] * 80


def test_an_archive_saved_before_this_format_is_replaced_with_a_warning():
    with pytest.warns(UserWarning, match="older format"):
        strategy = make_start_states("frontier", spaces.Box(0, 1, (1,)), archive=dict(visits=np.zeros(12), states={}))
    assert isinstance(strategy, FrontierStates) and len(strategy.archive) == 0


def test_each_cell_keeps_its_parent_and_the_best_episode_return_through_it():
    strategy, slots = frontier(n_cells=8), Slots(2)
    strategy.begin([0, 1], 0.0, 0)
    step(strategy, slots, [0.0, 7.0], [0.0, 0.0], ["a", "h"])  # cells 0 and 7 (range [0, 7], cells of width 7/8)
    step(strategy, slots, [1.0, 6.0], [1.0, 0.0], ["b", "g"])  # cells 1 and 6
    archive = strategy.archive
    key = dict(zip(archive.states, archive.keys.tolist(), strict=True))
    parent = dict(zip(archive.states, archive.parents.tolist(), strict=True))
    # a reset start has no cell: the first cells' parent is NO_CELL; then each the cell before on the member's path
    assert parent == {"a": NO_CELL, "h": NO_CELL, "b": key["a"], "g": key["h"]}
    assert np.isneginf(archive.finals).all()  # no episode ended yet
    # slot 0 ends with a last reward of 3 (return 1 + 3 = 4), slot 1 with -2 (return -2): each cell of a path keeps it
    strategy.finish(np.array([0, 1]), np.array([3.0, -2.0]))
    finals = dict(zip(archive.states, archive.finals.tolist(), strict=True))
    assert finals == {"a": 4.0, "b": 4.0, "h": -2.0, "g": -2.0}
    # a member restored into cell "b" (return 1 from its reset) that ends with return 10 more: "b" keeps 11, the
    # start's cell included; "a" (not on this episode's path) keeps 4; a worse episode changes nothing
    strategy.begin([0], 1.0, 1, key["b"])
    step(strategy, slots, [2.0, 0.0], [0.0, 0.0], ["c", "x"])
    strategy.finish(np.array([0]), np.array([10.0, 0.0]))
    strategy.begin([0], 0.0, 0, key["b"])
    strategy.finish(np.array([0]), np.array([-50.0, 0.0]))
    finals = dict(zip(archive.states, archive.finals.tolist(), strict=True))
    assert finals["b"] == 11.0 and finals["c"] == 11.0 and finals["a"] == 4.0
    assert dict(zip(archive.states, archive.parents.tolist(), strict=True))["c"] == key["b"]


def chain_archive(finals):
    """An archive of a chain of cells 0 -> 1 -> ... (each reached from the one before) with these best returns."""
    strategy, slots = frontier(n_cells=len(finals)), Slots(1)
    strategy.begin([0], 0.0, 0)
    for i in range(len(finals)):
        step(strategy, slots, [float(i)], [0.0], [i])
    strategy.archive.finals[:] = finals
    return strategy


def test_the_backward_step_is_the_cells_one_step_before_the_best_episodes():
    # cells 0..5 in a chain; the best episodes passed through cells 3-5 (return 1), the others ended with 0
    strategy = chain_archive([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    archive = strategy.archive
    # median 0.5, best 1: the best episodes' cells are those at 0.75 or more
    assert archive.best_episodes().tolist() == [False, False, False, True, True, True]
    # the parents of cells 3-5 are cells 2-4; 3 and 4 are on the best episodes themselves: the step back is cell 2
    assert [archive.states[e] for e in archive.backward_step()] == [2]
    # none while the returns agree, or no episode ended
    assert len(chain_archive([0.0] * 6).archive.backward_step()) == 0
    assert len(chain_archive([-np.inf] * 6).archive.backward_step()) == 0
    # a single lucky cell above a spread of returns: only the cells in the upper half between median and best count
    lucky = chain_archive([0.0, 1.0, 2.0, 3.0, 4.0, 10.0]).archive
    assert lucky.best_episodes().tolist() == [False, False, False, False, False, True]
    assert [lucky.states[e] for e in lucky.backward_step()] == [4]


def test_draws_take_the_backward_step_at_their_share():
    strategy = chain_archive([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    strategy.backward = 0.5
    np.random.seed(0)
    draws = [strategy.draw() for _ in range(2000)]
    share = np.mean([d.state == 2 for d in draws])
    # half the draws take the step back (cell 2); the rest spread over all six cells by count weights, cell 2 among
    # them: about 0.5 + 0.5 / 6 with equal weights, less as cell 2's choices pile up
    assert 0.5 < share < 0.5 + 0.5 / 6 + 0.03
    # a drawn start carries its cell, so that a group's episodes through it count for it
    assert all(d.cell == strategy.archive.keys[d.state] for d in draws)
    strategy.backward = 0.0
    assert np.mean([strategy.draw().state == 2 for _ in range(2000)]) < 0.2


def test_re_binning_renames_the_parents_and_the_paths():
    strategy, slots = frontier(n_cells=4), Slots(1)
    strategy.begin([0], 0.0, 0)
    step(strategy, slots, [0.0], [0.0], ["a"])
    step(strategy, slots, [1.0], [0.0], ["b"])
    step(strategy, slots, [3.0], [0.0], ["c"])  # the range grows: the cells are cut again, "a" and "b" apart still
    archive = strategy.archive
    key = dict(zip(archive.states, archive.keys.tolist(), strict=True))
    parent = dict(zip(archive.states, archive.parents.tolist(), strict=True))
    assert parent == {"a": NO_CELL, "b": key["a"], "c": key["b"]}
    strategy.finish(np.array([0]), np.array([1.0]))  # the path (a, b, c) in the new grid's cells
    assert archive.finals.tolist() == [1.0, 1.0, 1.0]


def test_an_archive_saved_before_the_backward_step_is_replaced_with_a_warning():
    old = start_states.FrontierArchive(4)
    del old.parents, old.finals  # an archive pickled before the fields existed has neither
    with pytest.warns(UserWarning, match="predates the backward step"):
        strategy = make_start_states("frontier", spaces.Box(0, 1, (1,)), archive=old)
    assert strategy.archive is not old and hasattr(strategy.archive, "finals")
