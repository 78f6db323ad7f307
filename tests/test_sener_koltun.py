"""Sener & Koltun's MultiMNIST (NeurIPS 2018, Table 3) as budget ``sener-koltun`` of the multi-mnist study: their
composites, their LeNet with its per-batch channel mask, the budget's protocol, and a tiny run of it whose report
gives both selections (by validation, and the paper's by test) with verdicts against Table 3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtlab.config.schema import RunConfig, TrainConfig
from mtlab.data.dataset import Split
from mtlab.data.multi_mnist import MultiData
from mtlab.data.overlay import Geometry, compose_split, overlay, stretch_to_bytes
from mtlab.errors import ConfigError
from mtlab.models import build_model
from mtlab.models.multi_lenet import MultiLeNet, batch_channel_mask
from mtlab.report import build_report
from mtlab.report.selection import selected_by_test, selection_frame
from mtlab.report.tables import load_study
from mtlab.study.catalog import find_study
from mtlab.study.controls import resolve_controls
from mtlab.study.runner import run_study
from mtlab.study.spec import expand
from mtlab.tasks import Task

SK = Geometry(canvas=36, offset=6, shift=0, size=28)
"""Their loader's geometry: a 36 x 36 canvas, the partner at (6, 6), resized to 28 x 28."""


pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: fastest on one thread


# ----------------------------------------------------------------------------------------------- composites


def test_composite_pixels_by_hand():
    """Single pixels traced through the construction: nearest resize from 36 to 28 reads canvas pixel
    floor((i + 0.5) * 36 / 28) for output i - outputs 0, 5, 21 read canvas rows 0, 7, 27, and canvas rows 6 and 33
    are read by no output."""
    left = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    right = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    left[0, 0, 0, 0] = 10  # canvas (0, 0) -> output (0, 0)
    left[0, 0, 27, 27] = 50  # canvas (27, 27), where right's (21, 21) lands too: the maximum, 80, wins
    right[0, 0, 21, 21] = 80
    right[0, 0, 27, 27] = 200  # canvas (33, 33): no output reads it
    right[0, 0, 0, 27] = 90  # canvas (6, 33): neither row 6 nor column 33 is read
    right[0, 0, 1, 1] = 70  # canvas (7, 7) -> output (5, 5)
    out = overlay(left, right, SK, torch.Generator().manual_seed(0))[0, 0]
    assert out.shape == (28, 28)
    assert (out[0, 0], out[21, 21], out[5, 5]) == (10, 80, 70)
    assert int((out > 0).sum()) == 3  # the 50 lost to the maximum, the 200 and the 90 to the resize


def test_stretch_spans_0_to_255_as_scipys_bytescale():
    canvas = torch.tensor([[0, 100, 200], [50, 150, 200]], dtype=torch.uint8).view(1, 1, 2, 3)
    # floor(v * 255 / 200 + 0.5): 100 -> 128 (127.5 + 0.5), 50 -> 64 (63.75 + 0.5), 150 -> 191 (191.25 + 0.5)
    assert stretch_to_bytes(canvas).flatten().tolist() == [0, 128, 255, 64, 191, 255]
    flat = torch.full((1, 1, 2, 2), 7, dtype=torch.uint8)
    assert stretch_to_bytes(flat).flatten().tolist() == [0, 0, 0, 0]  # span 0 counts as 1: v - min
    full = torch.tensor([0, 3, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    assert torch.equal(stretch_to_bytes(full), full)  # a canvas that spans 0-255 already is kept
    left = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    left[0, 0, 0, 0] = 100  # the only ink: stretched to 255 only with stretch on
    assert overlay(left, torch.zeros_like(left), SK, torch.Generator(), stretch=True)[0, 0, 0, 0] == 255
    assert overlay(left, torch.zeros_like(left), SK, torch.Generator())[0, 0, 0, 0] == 100


def _their_composite(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The composite as their loader's read_image_file builds it, step by step, then what scipy's imresize does to
    the float canvas: bytescale (stretch to span 0-255, round) and PIL's nearest-neighbour resize."""
    pil = pytest.importorskip("PIL.Image")
    canvas = np.zeros((36, 36))
    canvas[0:28, 0:28] = left
    canvas[6:34, 6:34] = right
    canvas[6:28, 6:28] = np.maximum(left[6:28, 6:28], right[0:22, 0:22])
    low, span = canvas.min(), canvas.max() - canvas.min()
    scaled = ((canvas - low) * (255.0 / (span or 1.0))).clip(0, 255) + 0.5
    return np.asarray(pil.fromarray(scaled.astype(np.uint8)).resize((28, 28), pil.NEAREST))


def test_composites_equal_their_loaders_construction_one_per_image():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8, generator=generator)
    images[:6] //= 2  # half of the digits peak below 128, so that composites of two of them are stretched
    labels = torch.arange(12) % 10
    source = Split(images, {"digit": labels})
    composed = compose_split(source, source, per_image=1, geometry=SK, seed=3, stream="multi-mnist/train",
                             stretch=True)  # fmt: skip
    assert composed.images.shape == (12, 1, 28, 28)  # one composite per source image
    assert torch.equal(composed.labels["left"], labels)  # image i is the top-left digit of composite i
    for i in range(12):
        # the partner is the source image whose label the composite's right label is: find it by its pixels
        partners = [j for j in range(12) if labels[j] == composed.labels["right"][i]]
        expected = [_their_composite(images[i, 0].numpy(), images[j, 0].numpy()) for j in partners]
        assert any(np.array_equal(composed.images[i, 0].numpy(), e) for e in expected), i
    again = compose_split(source, source, per_image=1, geometry=SK, seed=3, stream="multi-mnist/train", stretch=True)
    other = compose_split(source, source, per_image=1, geometry=SK, seed=4, stream="multi-mnist/train", stretch=True)
    assert torch.equal(again.images, composed.images)  # a function of the seed
    kept = compose_split(source, source, per_image=1, geometry=SK, seed=3, stream="multi-mnist/train")
    assert not torch.equal(kept.images, composed.images)  # some composites here were stretched
    assert not torch.equal(other.images, composed.images)


# ------------------------------------------------------------------------------------------------- network


def _net(channel_drop=0.5, head_drop=0.5) -> MultiLeNet:
    torch.manual_seed(0)
    return MultiLeNet({"left": 10, "right": 10}, (1, 28, 28), channel_drop, head_drop)


def test_their_lenet_has_their_shapes_and_parts():
    net = _net()
    counts = net.parameter_counts()
    # conv 1->10 @5x5 (260), conv 10->20 @5x5 (5,020), dense 320->50 (16,050); per head 50->50 (2,550), 50->10 (510)
    assert counts["shared"] == 260 + 5020 + 16050
    assert counts["task:left"] == counts["task:right"] == 2550 + 510
    assert net.representation() == ("shared", "trunk")
    out = net.eval()(torch.randn(4, 1, 28, 28))
    assert {t: o.shape for t, o in out.items()} == {"left": (4, 10), "right": (4, 10)}


def test_flops_per_image_behind_the_studys_cost_estimate():
    """The multi-mnist header's cost of budget sener-koltun starts from these counts (PyTorch's FLOP counter, a
    multiply-add = 2 FLOPs): 0.97 MFLOP forward, 2.63 MFLOP forward and backward per 28 x 28 image, two tasks."""
    from torch.utils.flop_counter import FlopCounterMode

    net = _net().train()
    x = torch.randn(8, 1, 28, 28)
    with FlopCounterMode(display=False) as forward:
        net(x)
    with FlopCounterMode(display=False) as both:
        sum(o.sum() for o in net(x).values()).backward()
    assert forward.get_total_flops() / 8 == 972_000
    assert both.get_total_flops() / 8 == 2_628_000


def test_channel_mask_is_one_draw_per_batch():
    x = torch.randn(64, 20, 8, 8)
    torch.manual_seed(0)
    mask = batch_channel_mask(x, 0.5)
    assert mask.shape == (1, 20, 1, 1)  # broadcast over the batch: every image loses the same channels
    assert set(mask.unique().tolist()) == {0.0, 1.0}  # 0/1, not rescaled by 1 / keep
    # The trunk in training: identical images give identical representations (nn.Dropout2d would drop channels per
    # image, so they would differ); a second batch draws a new mask.
    net = _net(head_drop=0.0).train()
    batch = torch.randn(1, 1, 28, 28).expand(16, 1, 28, 28)
    torch.manual_seed(1)
    z = net.features(batch)["shared"]
    assert torch.equal(z, z[:1].expand_as(z))
    masks = []
    for seed in range(8):
        torch.manual_seed(seed)
        masks.append(batch_channel_mask(x, 0.5))
    assert len({tuple(m.flatten().tolist()) for m in masks}) > 1
    # In evaluation nothing is masked; with nothing dropped, training equals evaluation (no rescaling anywhere).
    unmasked = _net(channel_drop=0.0, head_drop=0.0)
    assert torch.equal(unmasked.train()(batch)["left"], unmasked.eval()(batch)["left"])
    assert not torch.equal(net.train().features(batch)["shared"], net.eval().features(batch)["shared"])


def test_stacked_seeds_each_draw_one_channel_mask_per_batch():
    """Seeds trained together (vmapped, randomness "different"): each replica's mask is shared by its batch."""
    from mtlab.train.replicas import StackedReplicas

    nets = [_net(head_drop=0.0), _net(head_drop=0.0)]
    nets[1].load_state_dict(nets[0].state_dict())  # the same weights: only the masks can tell the replicas apart
    replicas = StackedReplicas(nets)
    replicas.train(True)
    batch = torch.randn(1, 1, 1, 28, 28).expand(2, 16, 1, 28, 28)
    found = set()
    for seed in range(4):
        torch.manual_seed(seed)
        z = replicas.features(batch)["shared"]  # (2, 16, 50)
        assert torch.equal(z, z[:, :1].expand_as(z))
        found.add(torch.equal(z[0], z[1]))
    assert False in found  # the two replicas draw their own masks


def test_head_mask_is_drawn_per_image():
    net = _net(channel_drop=0.0).train()
    z = torch.rand(1, 50).expand(32, 50)
    torch.manual_seed(0)
    scores = net.heads["left"](z)
    assert not torch.equal(scores, scores[:1].expand_as(scores))  # the same z, different units dropped per image


# -------------------------------------------------------------------------------------------------- budget


def test_budget_follows_their_protocol():
    spec, _ = find_study("multi-mnist")
    runs = expand(spec, "sener-koltun")
    by_variant = {r.variant: r for r in runs if r.seed == 0}
    assert set(by_variant) == {"single left", "single right", "uniform scaling", "uncertainty", "gradnorm", "mgda-ub"}
    assert sorted({r.seed for r in runs}) == [0, 1, 2]
    config = by_variant["mgda-ub"].config
    assert (config.data.dataset, config.data.per_image, config.data.canvas, config.data.offset) == (
        "multi-mnist", 1, 36, 6,
    )  # fmt: skip
    assert (config.data.size, config.data.shift, config.data.stretch) == (28, 0, True)
    assert config.model.kind == "multi_lenet"
    assert (config.optim.name, config.optim.lr, config.optim.momentum) == ("sgd", 0.05, 0.9)
    assert (config.optim.schedule, config.optim.step_epochs, config.optim.step_gamma) == ("step", 10, 0.85)
    assert config.optim.step_offset == 1
    assert config.optim.grad_clip is None
    assert (config.train.epochs, config.train.batch_size, config.train.test_history) == (100, 256, True)
    assert (config.loss.method, config.loss.gradients) == ("mgda", "representation")
    uniform = by_variant["uniform scaling"].config.loss
    assert (uniform.method, uniform.weights) == ("fixed", {"left": 0.5, "right": 0.5})
    assert by_variant["single left"].config.task_names == ["left"]
    assert spec.reference.budget == "sener-koltun"
    assert spec.reference.values["mgda-ub"]["left"]["acc"].mean == 97.26
    # The other budgets run the study as before: the Table 3 variants are not theirs, every method's is.
    controls = {v: set(c.values()) for v, c in resolve_controls(spec, runs).items()}
    assert controls == {v: {"uniform scaling"} for v in by_variant if v != "uniform scaling"}  # equal weights, as
    # the study's "shared, fixed" under the other budgets
    quick = {r.variant for r in expand(spec, "quick")}
    assert "mgda-ub" not in quick
    assert {"shared, fixed", "shared, gradnorm", "single left"} <= quick


def test_test_history_records_the_test_split_every_epoch_and_keeps_the_selected_weights_test():
    from test_fit import config, run, toy_splits

    splits = toy_splits(n=120, learnable=False)
    cfg = config(epochs=6, early_stopping={"metric": "val.loss", "patience": 6}, test_history=True)
    _, result = run(cfg, splits)
    assert all(f"test.{t}.acc" in r and "test.loss" in r for r in result.history for t in ("item", "group"))
    best = result.history[result.best_epoch - 1]
    # The run's test metrics are those of its validation-selected weights: the history's record of that epoch.
    for key, value in result.test.items():
        assert best[key] == pytest.approx(value, rel=1e-6), key
    _, without = run(config(epochs=6, early_stopping={"metric": "val.loss", "patience": 6}), splits)
    assert not any(k.startswith("test.") for r in without.history for k in r)
    assert without.test == result.test  # evaluating the test split every epoch changes nothing else


def test_step_offset_drops_the_rate_before_epochs_9_19_99_as_their_loop():
    """Their loop multiplies the rate by 0.85 at the start of 0-based epochs 9, 19, ..., 99: epoch e trains at
    0.05 * 0.85 ** ((e + 1) // 10). optim.step_offset 1 gives exactly that; 0 is PyTorch's StepLR (e // 10)."""
    from mtlab.config.schema import OptimConfig
    from mtlab.train.optim import build_schedule

    def rates(offset: int, steps: int = 3) -> list[float]:
        config = OptimConfig(name="sgd", lr=0.05, schedule="step", step_epochs=10, step_gamma=0.85, step_offset=offset)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
        schedule = build_schedule(config, optimizer, 100 * steps, steps_per_epoch=steps)
        per_epoch = []
        for _ in range(100):
            per_epoch.append(optimizer.param_groups[0]["lr"])
            for _ in range(steps):
                optimizer.step()
                schedule.step()
        return per_epoch

    theirs = [0.05 * 0.85 ** ((e + 1) // 10) for e in range(100)]
    assert rates(1) == pytest.approx(theirs, rel=1e-12)
    assert rates(0) == pytest.approx([0.05 * 0.85 ** (e // 10) for e in range(100)], rel=1e-12)
    with pytest.raises(ValueError, match="step_offset 10 must be less than step_epochs 10"):
        OptimConfig(schedule="step", step_epochs=10, step_offset=10)
    assert "step_offset" not in OptimConfig().model_dump()  # run ids of today's studies unchanged


def test_test_history_is_left_out_of_configs_that_do_not_ask_for_it():
    """Run ids hash the dumped config: the option's default leaves today's studies' ids as they were."""
    assert "test_history" not in TrainConfig().model_dump()
    assert TrainConfig(test_history=True).model_dump()["test_history"] is True
    assert "stretch" not in MultiData(dataset="multi-mnist").model_dump(mode="json")
    assert MultiData(dataset="multi-mnist", stretch=True).model_dump(mode="json")["stretch"] is True


def test_test_selection_takes_the_best_mean_epoch_the_first_on_a_tie():
    history = pd.DataFrame(
        [
            (1, "test.left.acc", 0.5), (1, "test.right.acc", 0.7),
            (2, "test.left.acc", 0.8), (2, "test.right.acc", 0.6),  # mean 0.70: best
            (3, "test.left.acc", 0.6), (3, "test.right.acc", 0.8),  # mean 0.70: a tie, later
            (3, "test.left.loss", 0.1),
        ],
        columns=["epoch", "metric", "value"],
    )  # fmt: skip
    epoch, values = selected_by_test(history, {"left": ("acc", 1.0), "right": ("acc", 1.0)})
    assert (epoch, values) == (2, {"left": 0.8, "right": 0.6})


@pytest.mark.slow
def test_tiny_budget_reports_both_selections_against_table_3(tmp_path):
    spec, _ = find_study("multi-mnist")
    # The reference's budget made the tiny one, so that its verdicts show (the protocol's budget is sener-koltun).
    spec = spec.model_copy(update={"reference": spec.reference.model_copy(update={"budget": "sener-koltun-tiny"})})
    result = run_study(spec, tmp_path / "study", budget="sener-koltun-tiny")
    assert not result.failed
    assert result.trained == result.total == 12
    report = build_report(tmp_path / "study")["md"].read_text()
    assert "Two selections: by validation (mtlab) and by test (the paper's)" in report
    assert "Each selection against the original" in report
    assert "selecting on the test split adds" in report
    assert "Against the original study" in report
    study = load_study(tmp_path / "study")
    frame = selection_frame(study)
    assert len(frame) == 2 * (2 + 4 * 2)  # seeds x (two single-task runs of one task, four methods of two tasks)
    # Each run's test-selected value is the best of its epochs by the mean test accuracy; its validation-selected
    # value is its test metric, which the test-selected epoch can only match or beat on that mean.
    per_run = frame.groupby(["variant", "seed"])[["validation", "test_selected"]].mean()
    assert (per_run["test_selected"] >= per_run["validation"] - 1e-9).all()
    model = build_model(RunConfig.model_validate(expand(spec, "sener-koltun-tiny")[0].config.model_dump()),
                        {"left": Task("left", tuple("0123456789"))}, (1, 28, 28))  # fmt: skip
    assert isinstance(model, MultiLeNet)


# ------------------------------------------------------------------------ variants per budget, control lists

_SPEC = {
    "name": "budgets",
    "seeds": 1,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 200},
        "model": {"trunk": {"type": "mlp", "widths": [16]}},
        "train": {"epochs": 1, "batch_size": 64},
    },
    "variants": {
        "equal": {"budgets": ["mine"]},
        "uw": {"set": {"loss.method": "uncertainty"}, "budgets": ["paper"]},
        "equal halves": {"set": {"loss.weights": {"item": 0.5, "group": 0.5}}, "budgets": ["paper"]},
    },
    "budgets": {"mine": {}, "paper": {}},
    "control": ["equal", "equal halves"],
}


def test_a_variant_runs_under_its_budgets_only_and_the_control_is_the_first_the_budget_runs(tmp_path):
    from mtlab.study.checks import check_control
    from mtlab.study.spec import StudySpec

    spec = StudySpec.model_validate(_SPEC)
    assert [r.variant for r in expand(spec, "mine")] == ["equal"]
    paper = expand(spec, "paper")
    assert [r.variant for r in paper] == ["uw", "equal halves"]
    assert resolve_controls(spec, paper) == {"uw": {"item": "equal halves", "group": "equal halves"}}
    check_control(spec, paper)
    with pytest.raises(ValueError, match=r"variant 'uw': budgets \['papr'\] are not among the budgets"):
        StudySpec.model_validate({**_SPEC, "variants": {**_SPEC["variants"], "uw": {"budgets": ["papr"]}}})
    # A variant without budgets dumps as before, so the stored definitions of earlier studies read unchanged.
    assert StudySpec.model_validate({**_SPEC, "variants": {"equal": {}}}).model_dump()["variants"] == {
        "equal": {"set": {}, "grid": {}}
    }
    none = StudySpec.model_validate({**_SPEC, "control": ["nothing", "neither"]})
    with pytest.raises(ConfigError, match=r"none of \['nothing', 'neither'\] is a variant of these runs"):
        check_control(none, paper)


# ------------------------------------------------------------------- the tables against the papers' text copy

# tables.md's MultiMNIST-family columns as the study's (its mean-of-two column and Recon's rows are not transcribed).
_COLUMNS = {"left_digit_acc": "left.acc", "right_digit_acc": "right.acc", "task1_acc": "left.acc",
            "task2_acc": "right.acc"}  # fmt: skip
_TRANSCRIBED = [("MultiMNIST", "Sener&Koltun Table 3"), ("MultiMNIST", "F-MTL Table 1"),
                ("MultiFashion", "F-MTL Table 1"), ("MultiFashion+MNIST", "F-MTL Table 1")]  # fmt: skip


def test_published_tables_match_the_papers_text_copy():
    from test_paper_studies import published_tables_md, tables_md_rows

    path = published_tables_md()
    if path is None:
        pytest.skip("no text copy of the papers' tables (shared/published/tables.md) beside this checkout")
    rows = tables_md_rows(path)
    spec, _ = find_study("multi-mnist")
    tables = spec.reference.published.tables
    assert len(tables) == len(_TRANSCRIBED)
    for table, key in zip(tables, _TRANSCRIBED, strict=True):
        printed = rows[key]
        assert [r["method"] for r in printed if r["method"] != "STL"] == list(table.rows), key
        for r in printed:
            cells = table.single_task if r["method"] == "STL" else table.rows[r["method"]]
            for column, value in r.items():
                if column in _COLUMNS and value:
                    mine = str(cells[table.columns.index(_COLUMNS[column])])
                    assert mine.replace(" ", "") == value.replace(" ", ""), (key, r["method"], column)
    # Table 3 is also the reference's values, which give verdicts for the single-task networks too.
    table3 = tables[0]
    values = spec.reference.values
    assert [values["single left"]["left"]["acc"].mean, values["single right"]["right"]["acc"].mean] == [
        float(c) for c in table3.single_task
    ]
    names = spec.reference.published.methods
    for method, cells in table3.rows.items():
        assert [values[names[method]][t]["acc"].mean for t in ("left", "right")] == [float(c) for c in cells]


def test_variants_of_other_budgets_leave_a_budgets_stored_definition_unchanged():
    """Adding a paper's variants for its own budget (and naming the budgets of an existing variant) does not make a
    store of another budget a different definition: `mtlab run` resumes it without --redefine."""
    from mtlab.study.definition import _defining
    from mtlab.study.spec import StudySpec

    before = StudySpec.model_validate({**_SPEC, "variants": {"equal": {}}, "control": "equal"})
    after = StudySpec.model_validate(_SPEC)
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    assert _defining(old, "mine") == _defining(new, "mine")
    assert _defining(old, "paper") != _defining(new, "paper")
