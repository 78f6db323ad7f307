"""Study statistics against golden values: the seed-paired bootstrap interval of delta_m, Holm's adjustment on a
textbook family, Cohen's d_z, and the ranking of variants - for accuracy, and with a lower-is-better regression
metric (MAE) beside it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlab.report.stats import (
    compare,
    delta_m,
    delta_m_interval,
    delta_m_point,
    effect_size,
    holm,
    rank_variants,
    summarize,
)


def metrics_frame(values: dict[tuple[str, str], list[float | None]], metric: dict[str, str] | None = None):
    """The store's metrics frame: {(variant, task): per-seed values (None = not finished)}; ``metric``: task ->
    metric name (default acc)."""
    rows = []
    for (variant, task), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            if value is not None:
                run = f"{variant}-{seed}"
                name = (metric or {}).get(task, "acc")
                rows.append(dict(run_id=run, variant=variant, seed=seed, split="test", task=task, metric=name,
                                 value=value))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------- Holm


def test_holm_on_a_textbook_family():
    # Four tests, sorted 0.005 < 0.01 < 0.03 < 0.04: times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then the running
    # maximum makes the last 0.06 (Holm 1979; the same family as in most textbooks' worked example).
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    # At alpha = 0.05 Holm rejects the first two in sorted order and stops at 0.03 > 0.05 / 2.
    assert list(adjusted < 0.05) == [True, False, False, True]


def test_holm_leaves_undefined_tests_out_of_the_family_and_caps_at_one():
    adjusted = holm(np.array([0.2, math.nan, 0.5, 0.01]))
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3]], [0.4, 0.5, 0.03])  # m = 3: 0.01*3, 0.2*2, max(0.5, 0.4)
    np.testing.assert_allclose(holm(np.array([0.6, 0.7])), [1.0, 1.0])
    assert holm(np.array([])).shape == (0,)


def test_holm_is_never_below_the_raw_p_and_never_above_bonferroni():
    p = np.random.default_rng(0).uniform(size=20)
    adjusted = holm(p)
    assert (adjusted >= p).all()
    assert (adjusted <= np.minimum(p * len(p), 1) + 1e-12).all()


# ----------------------------------------------------------------------------------------------- effect size


def test_effect_size_is_mean_over_sd_of_differences():
    assert effect_size(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert effect_size(np.array([0.01, -0.03, 0.02, 0.0])) == pytest.approx(0.0 / 1, abs=1e-12)
    assert math.isnan(effect_size(np.array([0.5])))
    assert math.isnan(effect_size(np.array([0.2, 0.2])))  # no spread: undefined, not infinite


# ---------------------------------------------------------------------------------------------- delta_m + CI


def test_bootstrap_interval_of_one_task_and_three_seeds_is_the_range_of_single_seed_delta_m():
    # One task, control 0.80 on every seed, the variant 0.80 / 0.84 / 0.90: per-seed delta_m 0, +5, +12.5 %.
    # A resample of one seed thrice has probability 1/27 > 2.5 %, so the percentile interval is exactly [0, 12.5].
    variant = np.array([[0.80, 0.84, 0.90]])
    control = np.full((1, 3), 0.80)
    low, high = delta_m_interval(variant, control)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(12.5)
    assert delta_m_point(variant, control) == pytest.approx(100 * (0.84666666 / 0.8 - 1), rel=1e-6)


def test_three_seed_interval_of_several_tasks_is_the_range_over_the_ten_resamples_not_the_single_seeds():
    # Three seeds have 10 distinct resamples (multisets of seeds), each of probability >= 1/27 > 2.5 %, so the
    # percentile interval runs from the lowest to the highest of their delta_m. For one task those are the worst and
    # the best single seed (mean(v) / mean(c) lies between the seeds' v / c); for several tasks a resample can go
    # beyond: {1, 2, 2} has task 0 at +4.2 % but task 1 at -5.3 %, -0.55 in all, below seed 2's 0.
    control = np.array([[0.80, 0.60, 0.90], [0.90, 0.70, 0.60]])
    variant = np.array([[0.84, 0.70, 0.90], [0.90, 0.60, 0.60]])
    single = [float(delta_m_point(variant[:, [i]], control[:, [i]])) for i in range(3)]
    draws = list(itertools.combinations_with_replacement(range(3), 3))
    assert len(draws) == 10
    resampled = [float(delta_m_point(variant[:, list(d)], control[:, list(d)])) for d in draws]
    low, high = delta_m_interval(variant, control)
    assert low == pytest.approx(min(resampled))
    assert high == pytest.approx(max(resampled))
    assert single == pytest.approx([2.5, 100 * (0.70 / 0.60 + 0.60 / 0.70 - 2) / 2, 0.0])
    assert low == pytest.approx(100 * ((2.5 / 2.4 - 1) + (0.6 / (1.9 / 3) - 1)) / 2)  # {1, 2, 2}: -0.548
    assert low < min(single) - 0.5


def test_bootstrap_interval_is_seed_paired_and_deterministic():
    rng = np.random.default_rng(3)
    control = 0.8 + 0.05 * rng.standard_normal((2, 10))
    # Each seed's variant moves with its control (shared seed effect) plus a small real gain: pairing removes the
    # seed effect, so the interval is much narrower than the spread of either side would allow.
    variant = control + 0.01 + 0.002 * rng.standard_normal((2, 10))
    low, high = delta_m_interval(variant, control)
    assert (low, high) == delta_m_interval(variant, control)  # fixed seed: the same interval every time
    point = float(delta_m_point(variant, control))
    assert low < point < high
    assert low > 0
    assert high - low < 1.0
    # An independent percentile bootstrap by hand agrees (to Monte Carlo error).
    draws = np.random.default_rng(0).integers(0, 10, size=(20000, 10))
    by_hand = delta_m_point(variant[:, draws].transpose(1, 0, 2), control[:, draws].transpose(1, 0, 2))
    np.testing.assert_allclose([low, high], np.percentile(by_hand, [2.5, 97.5]), atol=0.03)


def test_bootstrap_needs_two_seeds_and_lower_is_better_flips_the_sign():
    assert all(math.isnan(x) for x in delta_m_interval(np.array([[0.9]]), np.array([[0.8]])))
    loss_down = delta_m_point(np.array([[0.9, 1.1]]), np.array([[1.0, 1.0]]) * 1.25, higher_is_better=False)
    assert loss_down == pytest.approx(20.0)  # mean loss 1.0 vs 1.25: 20 % better


def test_delta_m_frame_pairs_seeds_across_per_task_controls():
    frame = metrics_frame(
        {
            ("two-head", "item"): [0.90, 0.92, 0.91],
            ("two-head", "group"): [0.96, 0.95, None],  # seed 2 did not finish this task's run
            ("item alone", "item"): [0.90, 0.90, 0.90],
            ("group alone", "group"): [0.96, 0.96, 0.96],
        }
    )
    controls = {"two-head": {"item": "item alone", "group": "group alone"}}
    (row,) = delta_m(frame, controls).to_dict("records")
    expected = 100 * ((0.91 / 0.90 - 1) + (0.955 / 0.96 - 1)) / 2  # seeds 0 and 1, the ones every task shares
    assert row["delta_m"] == pytest.approx(expected)
    assert row["tasks"] == 2
    assert row["n_seeds"] == 2
    single = [100 * ((0.90 / 0.90 - 1) + 0) / 2, 100 * ((0.92 / 0.90 - 1) + (0.95 / 0.96 - 1)) / 2]
    assert row["ci_low"] == pytest.approx(min(single))
    assert row["ci_high"] == pytest.approx(max(single))


def test_delta_m_point_and_interval_use_the_same_paired_seeds():
    # The control finished seeds 0-4, the variant only 0-2 (two runs failed); the control's seeds 3 and 4 happen to
    # be bad. Over every finished seed the variant looks 12.6 % better (0.815 vs the control's 0.724); on the seeds
    # both have it is 1.9 % better - and only that is inside the interval, which can only resample shared seeds.
    frame = metrics_frame(
        {
            ("control", "item"): [0.80, 0.81, 0.79, 0.60, 0.62],
            ("variant", "item"): [0.815, 0.825, 0.805, None, None],
        }
    )
    (row,) = delta_m(frame, {"variant": {"item": "control"}}).to_dict("records")
    assert row["n_seeds"] == 3
    assert row["delta_m"] == pytest.approx(100 * (0.815 / 0.80 - 1))  # 1.875, not 12.57
    assert row["ci_low"] <= row["delta_m"] <= row["ci_high"]
    # One task, three seeds: the interval is the worst to the best single seed (see the golden test above).
    single = [100 * (v / c - 1) for v, c in [(0.815, 0.80), (0.825, 0.81), (0.805, 0.79)]]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(min(single)), pytest.approx(max(single)))


def test_delta_m_of_a_variant_sharing_no_seed_with_its_control_is_undefined():
    frame = metrics_frame(
        {
            ("control", "item"): [0.80, 0.81, None, None],
            ("variant", "item"): [None, None, 0.90, 0.91],
        }
    )
    (row,) = delta_m(frame, {"variant": {"item": "control"}}).to_dict("records")
    assert row["n_seeds"] == 0
    assert all(math.isnan(row[k]) for k in ("delta_m", "ci_low", "ci_high"))


# ------------------------------------------------------------------------------------------- compare + ranks


def test_compare_adds_effect_size_and_holm_over_the_whole_table():
    frame = metrics_frame(
        {
            ("fixed", "item"): [0.80, 0.82, 0.81, 0.83],
            ("fixed", "group"): [0.90, 0.91, 0.92, 0.90],
            ("better", "item"): [0.85, 0.86, 0.86, 0.88],
            ("better", "group"): [0.90, 0.92, 0.91, 0.91],
        }
    )
    table = compare(frame, {"better": {"item": "fixed", "group": "fixed"}})
    assert list(table["task"]) == ["item", "group"]
    item, group = table.to_dict("records")
    diffs = np.array([0.05, 0.04, 0.05, 0.05])
    assert item["effect_size"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    np.testing.assert_allclose(table["holm_p"], holm(table["t_p"].to_numpy()))
    assert item["holm_p"] == pytest.approx(2 * item["t_p"])  # the smaller of two p-values, times 2
    assert item["holm_p"] < 0.05
    assert group["holm_p"] > 0.05


def test_the_same_difference_on_every_seed_is_an_undefined_test_outside_the_holm_family():
    frame = metrics_frame(
        {
            # +1 pp on every seed: the differences have no spread, so t = mean / (0 / sqrt(n)) is not a number.
            ("control", "item"): [0.70, 0.71, 0.69],
            ("variant", "item"): [0.71, 0.72, 0.70],
            # +1.23 pp on every seed, as stored: the differences differ by float rounding alone (~1e-16), which made
            # t about 1e15 and p about 1e-29 - a "win" from three seeds.
            ("control", "group"): [0.8123, 0.8523, 0.7923],
            ("variant", "group"): [0.8246, 0.8646, 0.8046],
            # A real comparison, the only one left in the family.
            ("control", "other"): [0.80, 0.82, 0.81, 0.83],
            ("variant", "other"): [0.85, 0.86, 0.86, 0.88],
        }
    )
    table = compare(frame, {"variant": {"item": "control", "group": "control", "other": "control"}})
    table = table.set_index("task")
    for task in ("item", "group"):
        row = table.loc[task]
        assert math.isnan(row["t_p"]), task
        assert math.isnan(row["holm_p"]), task
        assert math.isnan(row["effect_size"]), task  # d_z is undefined for the same reason
        assert row["verdict"] == "tie", task
        assert row["undefined"] == "the same difference on every seed", task
        assert row["diff_mean"] > 0  # the difference itself is still reported
        assert row["wilcoxon_p"] == pytest.approx(0.25)  # 3 positive differences: the rank test is defined
    assert table.loc["other", "undefined"] == ""
    assert table.loc["other", "holm_p"] == pytest.approx(table.loc["other", "t_p"])  # a family of one
    ranking = rank_variants(frame, compare(frame, {"variant": {"item": "control", "group": "control"}}))
    assert ranking.set_index("variant").loc["variant", ["wins", "ties"]].tolist() == [0, 2]


def test_identical_means_within_an_absolute_1e12_and_tiny_real_differences_are_tested():
    frame = metrics_frame(
        {
            # Equal values computed two ways (0.1 + 0.2 is 0.30000000000000004): identical, no test.
            ("control", "item"): [0.1 + 0.2, 0.4, 0.5],
            ("variant", "item"): [0.3, 0.4, 0.5],
            # 3, 5 and 4 more right answers per million test examples: tiny but real, and well defined. A relative
            # tolerance (np.allclose: 1e-5 of the value) called these identical and dropped them from the family.
            ("control", "group"): [0.99, 0.98, 0.985],
            ("variant", "group"): [0.990003, 0.980005, 0.985004],
        }
    )
    table = compare(frame, {"variant": {"item": "control", "group": "control"}}).set_index("task")
    assert math.isnan(table.loc["item", "t_p"])
    assert table.loc["item", "undefined"] == "identical on every seed"
    assert math.isnan(table.loc["item", "wilcoxon_p"])
    assert table.loc["group", "undefined"] == ""
    expected = stats.ttest_1samp([3e-6, 5e-6, 4e-6], 0.0).pvalue  # t = 4 / (1 / sqrt(3)) = 6.93, df 2: p = 0.020
    assert table.loc["group", "t_p"] == pytest.approx(expected, rel=1e-6)
    assert table.loc["group", "holm_p"] == pytest.approx(expected, rel=1e-6)
    assert table.loc["group", "effect_size"] == pytest.approx(4.0, rel=1e-6)


def test_fewer_than_two_pairs_is_an_undefined_test():
    frame = metrics_frame({("control", "item"): [0.70, 0.71], ("variant", "item"): [0.75, None]})
    (row,) = compare(frame, {"variant": {"item": "control"}}).to_dict("records")
    assert math.isnan(row["t_p"])
    assert row["undefined"] == "fewer than two paired seeds"


def test_ranking_averages_ranks_over_tasks_and_seeds_and_counts_verdicts():
    frame = metrics_frame(
        {
            ("fixed", "item"): [0.80, 0.82, 0.81, 0.83],
            ("fixed", "group"): [0.90, 0.91, 0.92, 0.90],
            ("better", "item"): [0.85, 0.86, 0.86, 0.88],
            ("better", "group"): [0.90, 0.92, 0.91, 0.91],
            ("item alone", "item"): [0.70, 0.71, 0.72, 0.73],
        }
    )
    controls = {"better": {"item": "fixed", "group": "fixed"}, "item alone": {"item": "fixed"}}
    ranking = rank_variants(frame, compare(frame, controls)).set_index("variant")
    assert list(ranking.index) == ["better", "fixed", "item alone"]
    # item: better 1st, fixed 2nd, item alone 3rd on every seed; group (two variants): seed 0 tie (1.5 each),
    # seed 1 better, seed 2 fixed, seed 3 better.
    assert ranking.loc["better", "mean_rank"] == pytest.approx((4 * 1 + 1.5 + 1 + 2 + 1) / 8)
    assert ranking.loc["fixed", "mean_rank"] == pytest.approx((4 * 2 + 1.5 + 2 + 1 + 2) / 8)
    assert ranking.loc["item alone", "mean_rank"] == 3
    assert ranking.loc["item alone", "cells"] == 4
    assert ranking.loc["better", ["wins", "ties", "losses"]].tolist() == [1, 1, 0]
    assert ranking.loc["item alone", ["wins", "ties", "losses"]].tolist() == [0, 0, 1]
    assert ranking.loc["fixed", "compared"] == 0


# ------------------------------------------------------------------------------- a lower-is-better task (MAE)

MIXED = {"digit": ("acc", True), "thickness": ("mae", False)}  # the measure: each task's primary and direction
MIXED_METRICS = {"digit": "acc", "thickness": "mae"}


def mixed_frame() -> pd.DataFrame:
    frame = metrics_frame(
        {
            ("fixed", "digit"): [0.90, 0.90, 0.90, 0.90],
            ("fixed", "thickness"): [0.50, 0.52, 0.51, 0.50],
            ("better", "digit"): [0.918, 0.918, 0.918, 0.918],  # +2 % relative
            ("better", "thickness"): [0.45, 0.46, 0.46, 0.45],  # lower MAE: better
            ("worse", "digit"): [0.90, 0.90, 0.90, 0.90],
            ("worse", "thickness"): [0.60, 0.63, 0.62, 0.61],  # higher MAE: worse
        },
        MIXED_METRICS,
    )
    # Rows of other metrics the measure must ignore: a loss that would rank the other way, and digit's f1.
    other = frame.assign(metric=frame["metric"].map({"acc": "f1", "mae": "loss"}), value=1 - frame["value"])
    return pd.concat([frame, other], ignore_index=True)


def test_delta_m_counts_a_lower_mae_as_a_gain():
    frame = mixed_frame()
    controls = {"better": {"digit": "fixed", "thickness": "fixed"}, "worse": {"digit": "fixed", "thickness": "fixed"}}
    table = delta_m(frame, controls, measure=MIXED).set_index("variant")
    control_mae, better_mae, worse_mae = 2.03 / 4, 1.82 / 4, 2.46 / 4
    assert table.loc["better", "delta_m"] == pytest.approx(100 * (0.02 + (control_mae - better_mae) / control_mae) / 2)
    assert table.loc["better", "delta_m"] > 0
    assert table.loc["worse", "delta_m"] == pytest.approx(100 * (0 - (worse_mae - control_mae) / control_mae) / 2)
    assert table.loc["worse", "delta_m"] < 0
    # The interval is signed the same way: per task directions reach the bootstrap (every resample is > 0 here).
    assert 0 < table.loc["better", "ci_low"] < table.loc["better", "delta_m"] < table.loc["better", "ci_high"]
    # Per-task directions in delta_m_point: acc up 2 %, MAE down 10 % -> (2 + 10) / 2.
    point = delta_m_point(np.array([[0.918], [0.45]]), np.array([[0.90], [0.50]]), [True, False])
    assert point == pytest.approx(6.0)


def test_delta_m_divides_by_the_controls_magnitude_so_a_negative_r2_still_counts_the_right_way():
    point = delta_m_point(np.array([[0.2]]), np.array([[-0.1]]), higher_is_better=True)  # R² from -0.1 to 0.2
    assert point == pytest.approx(300.0)


def test_compare_says_a_lower_mae_is_better():
    frame = mixed_frame()
    controls = {"better": {"thickness": "fixed"}, "worse": {"thickness": "fixed"}}
    table = compare(frame, controls, measure=MIXED).set_index("variant")
    assert table.loc["better", "metric"] == "mae"
    assert not table.loc["better", "higher_is_better"]
    assert table.loc["better", "diff_mean"] == pytest.approx(-0.0525)  # variant minus control, in the units
    assert bool(table.loc["better", "better"]) is True
    assert table.loc["better", "verdict"] == "win"
    assert bool(table.loc["worse", "better"]) is False
    assert table.loc["worse", "verdict"] == "loss"
    # Without a measure every task is scored by accuracy, higher is better (stores before typed tasks).
    assert set(compare(frame, {"better": {"digit": "fixed"}})["metric"]) == {"acc"}


def test_ranking_puts_the_lowest_mae_first():
    frame = mixed_frame()
    controls = {"better": {"digit": "fixed", "thickness": "fixed"}, "worse": {"digit": "fixed", "thickness": "fixed"}}
    ranking = rank_variants(frame, compare(frame, controls, measure=MIXED), measure=MIXED).set_index("variant")
    assert list(ranking.index) == ["better", "fixed", "worse"]
    # digit: better 1st on every seed, fixed and worse tie (2.5); thickness: better, fixed, worse on every seed.
    assert ranking.loc["better", "mean_rank"] == 1
    assert ranking.loc["fixed", "mean_rank"] == pytest.approx((4 * 2.5 + 4 * 2) / 8)
    assert ranking.loc["worse", "mean_rank"] == pytest.approx((4 * 2.5 + 4 * 3) / 8)
    # thickness: a win; digit: +1.8 pp on every seed, no spread - an undefined test, so a tie (it was a "win" at p = 0).
    assert ranking.loc["better", ["wins", "ties", "losses"]].tolist() == [1, 1, 0]
    assert ranking.loc["worse", "losses"] == 1  # thickness; digit is identical to the control (undefined test: tie)
    # Ranked by the loss rows instead (lower is better), which run the other way: the measure decides.
    by_loss = {"digit": ("f1", True), "thickness": ("loss", False)}
    by_loss_ranking = rank_variants(frame, compare(frame, controls, measure=by_loss), measure=by_loss)
    assert by_loss_ranking.iloc[0]["variant"] == "worse"


def test_summarize_takes_each_tasks_metric():
    frame = mixed_frame()
    table = summarize(frame, "test", MIXED).set_index(["variant", "task"])
    assert table.loc[("better", "thickness"), "metric"] == "mae"
    assert table.loc[("better", "thickness"), "mean"] == pytest.approx(0.455)
    assert table.loc[("better", "digit"), "metric"] == "acc"
    assert set(summarize(frame, "test", "loss")["task"]) == {"thickness"}  # one metric name for every task
