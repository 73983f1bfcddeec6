"""Assignment and box-similarity helpers used by the tracker."""

from __future__ import annotations

import itertools

import numpy as np

from pipeline.track.matching import expand_boxes, iou_matrix, match_boxes, solve_assignment


def brute_force_cost(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, c] for i, c in enumerate(cols))
                   for cols in itertools.permutations(range(m), n))
    return brute_force_cost(cost.T)


def test_assignment_is_optimal_on_random_rectangular_matrices() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (3, 3), (4, 2), (2, 5), (5, 5), (6, 4)]:
        for _ in range(5):
            cost = rng.uniform(0, 1, size=(n, m))
            pairs = solve_assignment(cost)
            assert len(pairs) == min(n, m)
            assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
            assert np.isclose(sum(cost[r, c] for r, c in pairs), brute_force_cost(cost))


def test_iou_and_expansion() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(iou_matrix(a, b), [[50 / 150, 0.0]])
    assert np.allclose(expand_boxes(a, 0.5), [[-5, -5, 15, 15]])


def test_match_boxes_gates_and_prefers_best_total_overlap() -> None:
    tracks = [(0, 0, 10, 10), (100, 100, 110, 110)]
    dets = [(101, 100, 111, 110), (1, 0, 11, 10), (500, 500, 510, 510)]
    matches, lost, new = match_boxes(tracks, dets, min_iou=0.3, expand=0.0)
    assert matches == [(0, 1), (1, 0)]
    assert lost == [] and new == [2]
    # Expansion lets a 16 px box that moved 10 px match; without it the gate rejects it.
    moved = [(10, 0, 26, 16)]
    assert match_boxes([(0, 0, 16, 16)], moved, 0.3, 0.0)[0] == []
    assert match_boxes([(0, 0, 16, 16)], moved, 0.3, 0.5)[0] == [(0, 0)]
    # Boxes of very different size at the same centre do not match even when expanded.
    assert match_boxes([(0, 0, 16, 16)], [(-12, -12, 28, 28)], 0.3, 0.5)[0] == []
