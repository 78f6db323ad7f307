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


def synthetic_study(points: dict[str, list[tuple[float, ...]]], methods: dict[str, str], tasks, task_info):
    """A StudyData of finished runs: per variant, one point (a value per task) per seed."""
    import json
    from pathlib import Path

    import pandas as pd

    from mtlab.report.tables import StudyData

    runs, metrics = [], []
    for variant, seeds in points.items():
        for seed, values in enumerate(seeds):
            run_id = f"{variant}-{seed}"
            config = {"tasks": list(tasks), "loss": {"method": methods[variant]}}
            runs.append({"run_id": run_id, "variant": variant, "seed": seed, "config": json.dumps(config),
                         "labels": {}, "status": "done"})
            metrics += [{"run_id": run_id, "variant": variant, "seed": seed, "split": "test", "task": t,
                         "metric": task_info[t].primary, "value": v} for t, v in zip(tasks, values, strict=True)]
    return StudyData(Path("."), {}, pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame(), {},
                     list(points), list(tasks), [], task_info)


def test_the_trade_off_section_counts_a_lower_is_better_task_downwards_against_the_static_front():
    from mtlab.report.frontier import frontier_frame, frontier_table
    from mtlab.study.store import TaskInfo

    info = {"acc_task": TaskInfo("acc_task"),
            "err_task": TaskInfo("err_task", "regression", "mae", {"loss": "min", "mae": "min"})}
    points = {
        "w=0.2": [(0.6, 1.0), (0.6, 1.0)],   # fixed weights: the static sweep
        "w=0.8": [(0.9, 3.0), (0.9, 3.0)],
        "beyond": [(0.8, 1.5), (0.8, 1.5)],  # between the two static points, better than both corners: adds volume
        "behind": [(0.7, 3.0), (0.7, 3.0)],  # dominated by w=0.8 (lower accuracy, same error)
    }
    methods = {"w=0.2": "fixed", "w=0.8": "fixed", "beyond": "famo", "behind": "mgda"}
    study = synthetic_study(points, methods, ["acc_task", "err_task"], info)
    frame, reference = frontier_frame(study)
    # Reference: accuracy 0.6 - 0.1 * 0.3 = 0.57; error (lower is better) 3.0 + 0.1 * 2.0 = 3.2.
    assert reference["acc_task"] == pytest.approx(0.57)
    assert reference["err_task"] == pytest.approx(3.2)
    rows = frame.set_index("variant")
    # One point's volume: (acc - 0.57) * (3.2 - err).
    assert rows.loc["beyond", "hv"] == pytest.approx((0.8 - 0.57) * (3.2 - 1.5))
    assert rows.loc["w=0.2", "hv"] == pytest.approx(0.03 * 2.2)
    assert frame.attrs["static_hv"] == pytest.approx(0.33 * 0.2 + 0.03 * 2.2 - 0.03 * 0.2)  # the two boxes overlap
    # beyond adds the part of its box outside the static boxes: [0.6, 0.8] x [1.5, 3.0] in (acc, err).
    assert rows.loc["beyond", "adds_to_static"] == pytest.approx(0.2 * 1.5)
    assert rows.loc["behind", "adds_to_static"] == pytest.approx(0.0)
    assert list(rows.index[rows["static"]]) == ["w=0.2", "w=0.8"]
    assert not rows.loc["behind", "non_dominated"]
    table, text = frontier_table(study)
    assert "err_task test mae 3.200 (lower is better)" in text
    assert "acc_task test acc 57.00% (higher is better)" in text
    verdicts = {row[0].text: row[-1].text for row in table.rows}
    assert verdicts == {"w=0.2": "static sweep", "w=0.8": "static sweep", "beyond": "beyond the static front",
                        "behind": "not beyond the static front"}


def test_no_trade_off_section_for_one_or_four_tasks():
    from mtlab.report.frontier import frontier_table
    from mtlab.study.store import TaskInfo

    for tasks in (["a"], ["a", "b", "c", "d"]):
        info = {t: TaskInfo(t) for t in tasks}
        study = synthetic_study({"v": [tuple(0.5 for _ in tasks)]}, {"v": "fixed"}, tasks, info)
        assert frontier_table(study) is None
