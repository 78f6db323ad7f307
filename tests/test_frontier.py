"""Trade-offs beyond a table: the exact 2-3-D hypervolume against hand values and a unit-cell count, and the
report's trade-off section on a stored study (reference point stated, lower-is-better metrics counted downwards)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtlab.report.frontier import hypervolume


def test_hypervolume_by_hand_in_two_dimensions():
    # Three staircase points over the origin: 3 x 1 + 2 x 1 + 1 x 1.
    assert hypervolume(np.array([[3, 1], [2, 2], [1, 3]]), np.zeros(2)) == pytest.approx(6.0)
    # A dominated point and one not beyond the reference add nothing.
    assert hypervolume(np.array([[3, 1], [2, 2], [1, 3], [1, 1], [5, -1]]), np.zeros(2)) == pytest.approx(6.0)
    # The reference point shifts every box: (3 - 1) x (1 - 0.5).
    assert hypervolume(np.array([[3.0, 1.0]]), np.array([1.0, 0.5])) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 2)), np.zeros(2)) == 0.0


def test_hypervolume_by_hand_in_three_dimensions():
    assert hypervolume(np.array([[1, 1, 1]]), np.zeros(3)) == pytest.approx(1.0)
    # Inclusion-exclusion: three boxes of 2, pairwise and triple intersections the unit cube: 6 - 3 + 1.
    assert hypervolume(np.array([[2, 1, 1], [1, 2, 1], [1, 1, 2]]), np.zeros(3)) == pytest.approx(4.0)
    assert hypervolume(np.array([[3, 1, 1], [1, 3, 1], [1, 1, 3]]), np.zeros(3)) == pytest.approx(7.0)


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_counts_the_dominated_unit_cells_of_integer_points(dims):
    rng = np.random.default_rng(dims)
    for _ in range(5):
        points = rng.integers(1, 7, size=(6, dims))
        cells = sum(
            1 for cell in itertools.product(range(6), repeat=dims)
            if any((np.array(cell) + 1 <= p).all() for p in points)
        )
        assert hypervolume(points, np.zeros(dims)) == pytest.approx(cells)


def test_hypervolume_refuses_four_objectives():
    with pytest.raises(ValueError, match="1 to 3 objectives"):
        hypervolume(np.ones((2, 4)), np.zeros(4))
