"""The report figures' layout choices (:mod:`mtlab.report.layout`), tested as the pure functions they are: which
learning curves are highlighted, when task weights get a log axis, when a figure is replaced by a sentence, how far a
dot plot's axis reaches, how panel titles wrap, and where point labels go."""

from __future__ import annotations

import itertools

import pytest

from mtlab.report.layout import (
    CHAR_WIDTH,
    all_equal,
    boxes_overlap,
    dot_axis_limits,
    few_values_sentence,
    fixed_weights_sentence,
    highlighted_variants,
    place_labels,
    weight_axis_scale,
    wrap_title,
)

WEIGHTINGS = [f"two-head, {m}" for m in ("upgrad", "mean", "pcgrad", "nash_mtl", "fixed", "dwa", "famo", "gls", "rlw")]


def test_few_variants_are_all_drawn_in_colour():
    assert highlighted_variants(WEIGHTINGS[:8], ["two-head, fixed"]) is None


def test_many_variants_highlight_the_best_few_and_the_control():
    chosen = highlighted_variants(WEIGHTINGS, ["two-head, fixed"], top=3)
    assert chosen == ["two-head, upgrad", "two-head, mean", "two-head, pcgrad", "two-head, fixed"]


def test_a_control_among_the_best_is_not_counted_twice():
    best_first = ["two-head, fixed", *WEIGHTINGS[:4], *WEIGHTINGS[5:]]
    chosen = highlighted_variants(best_first, ["two-head, fixed"], top=2)
    assert chosen == ["two-head, upgrad", "two-head, mean", "two-head, fixed"]
    assert len(set(chosen)) == len(chosen)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([0.5, 1.0, 2.0, 4.9], "linear"),  # under 10x
        ([0.5, 1.0, 55.0], "log"),  # nash_mtl beside the rest: the case that flattened every other line
        ([0.0, 0.5, 55.0], "symlog"),  # a zero weight (lambda = 0) cannot go on a log axis
        ([float("nan"), 0.5, 4.0], "linear"),  # NaN is ignored
        ([1.0], "linear"),
    ],
)
def test_task_weights_get_a_log_axis_when_they_span_more_than_ten_times(weights, expected):
    assert weight_axis_scale(weights) == expected


def test_identical_values_are_said_in_a_sentence_not_drawn():
    names = [f"variant {i}" for i in range(18)]
    assert all_equal([109_165.0] * 18)
    assert not all_equal([109_165.0] * 17 + [104_938.0])
    sentence = few_values_sentence(names, [109_165.0] * 18, "trainable parameters")
    assert sentence == "Every variant (18) has 109,165 trainable parameters; no figure is drawn."


def test_few_distinct_values_are_grouped_in_a_sentence():
    names = ["single item", "single group", *WEIGHTINGS]
    values = [104_938.0, 104_707.0] + [109_165.0] * len(WEIGHTINGS)
    sentence = few_values_sentence(names, values, "trainable parameters")
    assert sentence.startswith('Trainable parameters: 109,165 for 9 variants ("two-head, upgrad", ')
    assert "and 6 more" in sentence
    assert '104,938 for "single item"; 104,707 for "single group"' in sentence
    assert sentence.endswith("No figure: only 3 distinct values.")


def test_varied_values_are_drawn():
    names = [f"v{i}" for i in range(6)]
    assert few_values_sentence(names, [1.0, 1.0, 2.0, 2.0, 3.0, 4.0], "parameters") is None  # 4 distinct
    assert few_values_sentence(names[:3], [1.0, 2.0, 3.0], "parameters") is None  # one value per variant
    assert few_values_sentence([], [], "parameters") is None


def test_dot_axis_holds_every_value_and_does_not_blow_up_small_differences():
    values = [74.1, 74.3, 74.2]
    lo, hi = dot_axis_limits(values, percent=True)
    assert lo <= min(values)
    assert hi >= max(values)
    assert hi - lo == pytest.approx(5.0)  # 0.2 pp of spread shown on a 5 pp axis, not filling the panel
    wide = [60.0, 95.0]
    lo, hi = dot_axis_limits(wide, percent=True)
    assert lo < 60.0
    assert hi > 95.0
    assert hi - lo == pytest.approx(35.0 * 1.16)


def test_dot_axis_of_percentages_stays_between_0_and_100():
    lo, hi = dot_axis_limits([99.5, 99.9, 100.0], percent=True)
    assert hi == 100.0
    assert lo <= 99.5
    assert hi - lo >= 5.0
    lo, hi = dot_axis_limits([0.0, 0.4], percent=True)
    assert lo == 0.0
    assert hi >= 5.0


def test_dot_axis_of_other_metrics():
    lo, hi = dot_axis_limits([0.45, 0.46], percent=False, nonnegative=True)
    assert lo <= 0.45
    assert hi >= 0.46
    assert lo >= 0.0
    lo, hi = dot_axis_limits([-2.0, 3.0], percent=False)
    assert lo < -2.0
    assert hi > 3.0
    assert dot_axis_limits([float("nan")], percent=True) == (0.0, 100.0)


def test_panel_titles_wrap_to_the_panel_width():
    title = "two-head, cross-stitch, sharing on, aux on, lambda=0.3\nitem · seed 2 · accuracy 83.60%"
    wrapped = wrap_title(title, width_inches=2.3, fontsize=10)
    budget = 2.3 * 72 / (CHAR_WIDTH * 10)
    lines = wrapped.split("\n")
    assert len(lines) > 2
    assert all(len(line) <= budget for line in lines)
    assert " ".join(lines).split() == title.split()  # nothing lost
    assert wrap_title("short\ntitle", 3.0, 10) == "short\ntitle"


def _boxes(anchors, sizes, offsets):
    return [(x + dx, y + dy, x + dx + w, y + dy + h) for (x, y), (w, h), (dx, dy) in
            zip(anchors, sizes, offsets, strict=True)]


def test_labels_of_crowded_points_do_not_overlap():
    # Four means within a few points of each other (the imtl_g / nash_mtl / uncertainty cluster of a report).
    anchors = [(300.0, 200.0), (304.0, 203.0), (308.0, 199.0), (302.0, 196.0)]
    sizes = [(CHAR_WIDTH * 8 * len(t), 10.0) for t in ("imtl_g", "nash_mtl", "uncertainty", "aligned_mtl")]
    offsets = place_labels(anchors, sizes, bounds=(0.0, 0.0, 800.0, 400.0))
    boxes = _boxes(anchors, sizes, offsets)
    for a, b in itertools.combinations(boxes, 2):
        assert not boxes_overlap(a, b)
    assert offsets == place_labels(anchors, sizes, bounds=(0.0, 0.0, 800.0, 400.0))  # deterministic


def test_labels_avoid_other_points_and_stay_inside_the_axes():
    anchors = [(790.0, 390.0)]  # top-right corner: the label goes left and down
    sizes = [(60.0, 10.0)]
    (dx, dy), = place_labels(anchors, sizes, bounds=(0.0, 0.0, 800.0, 400.0))
    assert 790.0 + dx >= 0.0
    assert 790.0 + dx + 60.0 <= 800.0
    assert 390.0 + dy + 10.0 <= 400.0
    # A point right of the anchor pushes the label off its first choice (the right side).
    (dx, dy), = place_labels([(100.0, 100.0)], [(40.0, 10.0)], obstacles=[(120.0, 104.0)])
    box = (100.0 + dx, 100.0 + dy, 140.0 + dx, 110.0 + dy)
    assert not boxes_overlap(box, (115.0, 99.0, 125.0, 109.0))
    assert (dx, dy) != (4.0, -5.0)  # not the first choice, right of the point


def test_weights_that_never_move_are_a_sentence():
    fixed = {"leq": {"aux off": [1.0, 1.0], "aux on": [0.5, 0.5]}, "digit_a": {"aux on": [0.25, 0.25]}}
    assert fixed_weights_sentence(fixed) == (
        "Every variant kept its task weights fixed in every epoch (leq 0.5 or 1; digit_a 0.25); no figure is drawn."
    )
    same = {"item": {"a": [1.0, 1.0]}, "group": {"a": [1.0], "b": [1.0]}}
    assert fixed_weights_sentence(same) == (
        "Every variant gave every task the same weight (1) in every epoch; no figure is drawn."
    )
    moving = {"leq": {"aux off": [1.0, 1.0], "nash_mtl": [0.5, 55.0]}}
    assert fixed_weights_sentence(moving) is None
    assert fixed_weights_sentence({"leq": {}}) is None
