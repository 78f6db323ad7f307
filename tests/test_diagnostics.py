"""Task-gradient conflict diagnostics: the numbers equal a hand computation, both step strategies agree, stacked
runs equal solo runs, and measuring never changes training - for every registered weighting method."""

from __future__ import annotations

import math

import pytest
import torch

from mtlab.config import parse_config
from mtlab.train.diagnostics import ConflictDiagnostics
from mtlab.train.fit import fit
from mtlab.weighting import method_class, registered_methods
from test_replicas import CPU, PAIR_TASKS, assert_same, build, pair_config, pair_splits, solo_and_group

PAIRS = ["leq~digit_a", "leq~digit_b", "digit_a~digit_b"]
STATS = ["cos_mean", "cos_p10", "conflict", "ratio"]
CLASSES = {t: task.num_classes for t, task in PAIR_TASKS.items()}


def with_options(config, loss: dict | None = None, diagnostics: dict | None = None, **train):
    raw = config.model_dump(mode="json")
    if loss is not None:
        # The pair config's preference 0.5 / 0.25 / 0.25, for every method that takes loss.weights (scale-invariant
        # methods refuse them: weighting/base.py MethodOptions.weights_refused).
        refused = "method" in loss and method_class(loss["method"]).Options.weights_refused
        raw["loss"] = {"weights": {} if refused else raw["loss"]["weights"], **loss}
    raw["train"].update(train, diagnostics=diagnostics)
    return parse_config(raw)


def test_cosine_and_ratio_equal_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    shared = [torch.randn(3, 4, generator=g, requires_grad=True), torch.randn(5, generator=g, requires_grad=True)]
    x = torch.randn(6, 4, generator=g)
    a = ((x @ shared[0].T).sum(1) ** 2).mean() + shared[1].sum()
    b = (torch.tanh(x @ shared[0].T) * shared[1][:3]).sum() * 3
    probe = ConflictDiagnostics(["a", "b"], 1, shared, ["w.weight", "v.bias"], replicas=1, layers=True)
    assert probe.due()
    probe.record_losses([a.reshape(1), b.reshape(1)])
    (record,) = probe.summary()
    ga = torch.cat([t.flatten() for t in torch.autograd.grad(a, shared, retain_graph=True)])
    gb = torch.cat([t.flatten() for t in torch.autograd.grad(b, shared, retain_graph=True)])
    assert record["grad.a~b.cos_mean"] == pytest.approx(float(torch.cosine_similarity(ga, gb, 0)), rel=1e-5)
    assert record["grad.a~b.ratio"] == pytest.approx(float(ga.norm() / gb.norm()), rel=1e-5)
    assert record["grad.a~b.conflict"] == float(torch.dot(ga, gb) < 0)
    # Per layer: the first tensor's columns alone.
    assert record["grad.a~b.w.cos_mean"] == pytest.approx(float(torch.cosine_similarity(ga[:12], gb[:12], 0)), rel=1e-5)
    assert "grad.a~b.v.cos_mean" in record


def test_epoch_statistics_over_several_steps_and_the_schedule():
    probe = ConflictDiagnostics(["a", "b"], 3, [torch.zeros(2)], ["w"], replicas=1)
    assert [probe.due() for _ in range(7)] == [True, False, False, True, False, False, True]
    for cos in (0.5, -0.5, 1.0, -1.0, 0.0):  # unit gradients at the given cosine; |g_b| = 2
        jacobian = torch.tensor([[[1.0, 0.0], [2 * cos, 2 * math.sqrt(1 - cos**2)]]])
        probe.record_jacobian(jacobian)
    (record,) = probe.summary()
    assert record["grad.a~b.cos_mean"] == pytest.approx(0.0, abs=1e-6)
    assert record["grad.a~b.conflict"] == pytest.approx(2 / 5)
    assert record["grad.a~b.cos_p10"] == pytest.approx(-0.8, abs=1e-6)  # linear: sorted[0.4] = -1 + 0.4 * 0.5
    assert record["grad.a~b.ratio"] == pytest.approx(0.5)
    assert probe.summary() == [{}]  # a new epoch starts empty


def unit_pair(cos: float, norm_b: float = 2.0) -> list[list[float]]:
    """Two gradients in the plane: a = (1, 0), b at the given cosine with length ``norm_b``."""
    return [[1.0, 0.0], [norm_b * cos, norm_b * math.sqrt(1 - cos**2)]]


def test_a_step_with_a_zero_task_gradient_is_skipped_for_its_pairs_and_counted():
    """A measured step where one task's gradient is zero (e.g. a batch without one labelled example of it) has no
    cosine for that task's pairs: it is left out of their epoch statistics and counted, instead of turning the whole
    epoch to NaN. Two replicas: the zero step is only in replica 0."""
    probe = ConflictDiagnostics(["a", "b", "c"], 1, [torch.zeros(2, 2)], ["w"], replicas=2)
    steps = []
    for cos, zero_b in ((0.5, False), (0.3, True), (-0.5, False), (1.0, False)):
        a, b = unit_pair(cos)
        c = [0.0, 1.0]
        replica0 = [a, [0.0, 0.0] if zero_b else b, c]
        replica1 = [a, b, c]
        steps.append(cos)
        probe.record_jacobian(torch.tensor([replica0, replica1]))
    zero, full = probe.summary()
    assert zero["grad.a~b.skipped"] == 1
    assert zero["grad.b~c.skipped"] == 1
    assert zero["grad.a~c.skipped"] == 0
    assert full["grad.a~b.skipped"] == 0
    assert zero["grad.a~b.cos_mean"] == pytest.approx((0.5 - 0.5 + 1.0) / 3)  # the three steps with both gradients
    assert zero["grad.a~b.conflict"] == pytest.approx(1 / 3)
    assert zero["grad.a~b.cos_p10"] == pytest.approx(-0.5 + 0.2 * 1.0)  # sorted -0.5, 0.5, 1: position 0.2
    assert zero["grad.a~b.ratio"] == pytest.approx(0.5)
    assert full["grad.a~b.cos_mean"] == pytest.approx(sum(steps) / 4)
    assert zero["grad.a~c.cos_mean"] == pytest.approx(0.0, abs=1e-7)  # a and c are orthogonal on every step
    # b~c: b's sine over the three steps it has a gradient.
    sines = [math.sqrt(1 - x**2) for x in (0.5, -0.5, 1.0)]
    assert zero["grad.b~c.cos_mean"] == pytest.approx(sum(sines) / 3, abs=1e-6)
    for record in (zero, full):
        assert not any(math.isnan(v) for v in record.values())


def test_a_layer_with_a_zero_task_gradient_is_skipped_for_that_layer_only():
    shared = [torch.zeros(2), torch.zeros(2)]
    probe = ConflictDiagnostics(["a", "b"], 1, shared, ["w.weight", "v.weight"], replicas=1, layers=True)
    probe.record_jacobian(torch.tensor([[[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]]))  # b: nothing on layer v
    probe.record_jacobian(torch.tensor([[[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]]]))
    (record,) = probe.summary()
    assert record["grad.a~b.skipped"] == 0
    assert record["grad.a~b.w.skipped"] == 0
    assert record["grad.a~b.v.skipped"] == 1
    assert record["grad.a~b.v.cos_mean"] == pytest.approx(1.0)  # the second step alone
    assert record["grad.a~b.w.cos_mean"] == pytest.approx((math.sqrt(0.5) + 1.0) / 2)


def test_a_loss_without_a_gradient_on_the_shared_parameters_is_skipped_not_nan():
    g = torch.Generator().manual_seed(1)
    shared = [torch.randn(3, generator=g, requires_grad=True)]
    probe = ConflictDiagnostics(["a", "b"], 1, shared, ["w"], replicas=1)
    probe.record_losses([(shared[0] ** 2).sum().reshape(1), (shared[0] * 0).sum().reshape(1)])  # b: zero gradient
    probe.record_losses([(shared[0] ** 2).sum().reshape(1), shared[0].sum().reshape(1)])
    (record,) = probe.summary()
    expected = torch.cosine_similarity(2 * shared[0].detach(), torch.ones(3), 0)
    assert record["grad.a~b.cos_mean"] == pytest.approx(float(expected), rel=1e-5)
    assert record["grad.a~b.skipped"] == 1


def test_a_pair_with_a_task_of_weight_zero_is_nan_with_every_step_skipped():
    """A gradient-based method never computes the gradient of a task of weight 0: no step has its cosine."""
    probe = ConflictDiagnostics(["a", "b"], 1, [torch.zeros(2)], ["w"], replicas=1)
    for _ in range(3):
        probe.record_jacobian(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), task_weights=torch.tensor([1.0, 0.0]))
    (record,) = probe.summary()
    assert math.isnan(record["grad.a~b.cos_mean"])
    assert math.isnan(record["grad.a~b.ratio"])
    assert record["grad.a~b.skipped"] == 3


def test_scalar_and_jacobian_steps_measure_the_same_gradients():
    """fixed (T extra backward passes) and mean (its own Jacobian, unscaled by loss.weights) see the same first
    step: same initial weights, same batch, raw-loss gradients whatever the weighting."""
    first = {}
    for method in ("fixed", "mean"):
        config = with_options(pair_config("shallow FC", 0, epochs=1), {"method": method}, {"every": 1000})
        first[method] = fit(build(config, PAIR_TASKS, (2, 14, 14)), pair_splits(0), config, tasks=CLASSES,
                            device=CPU).history[0]
    for pair in PAIRS:
        for stat in STATS:
            key = f"grad.{pair}.{stat}"
            assert first["mean"][key] == pytest.approx(first["fixed"][key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("name", registered_methods())
def test_every_method_measures_conflict_without_changing_training(name):
    base = pair_config("shallow FC", 1, epochs=1)
    plain = with_options(base, {"method": name})
    measured = with_options(base, {"method": name}, {"every": 2, "layers": True})
    a = fit(build(plain, PAIR_TASKS, (2, 14, 14)), pair_splits(1), plain, tasks=CLASSES, device=CPU)
    b = fit(build(measured, PAIR_TASKS, (2, 14, 14)), pair_splits(1), measured, tasks=CLASSES, device=CPU)
    for x, y in zip(a.history, b.history, strict=True):
        for key, value in x.items():
            if not key.endswith("seconds"):
                assert y[key] == value, key  # bit for bit: measuring reads gradients, it never writes them
    assert a.test == b.test
    record = b.history[-1]
    for pair in PAIRS:
        assert -1 <= record[f"grad.{pair}.cos_mean"] <= 1
        assert record[f"grad.{pair}.cos_p10"] <= record[f"grad.{pair}.cos_mean"] + 1e-9
        assert 0 <= record[f"grad.{pair}.conflict"] <= 1
        assert record[f"grad.{pair}.ratio"] > 0
    assert any(".branch." in k or k.count(".") > 2 for k in record if k.startswith("grad.leq~digit_a."))
    assert not any(k.startswith("grad.") for k in a.history[-1])


def test_stacked_replicas_measure_what_solo_runs_measure():
    configs = [with_options(pair_config("shallow FC", s, epochs=2), {"method": "pcgrad"}, {"every": 3})
               for s in (0, 1)]
    solo, group = solo_and_group(configs, PAIR_TASKS, (2, 14, 14), pair_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
        assert "grad.leq~digit_a.cos_mean" in s.history[-1]


def test_runs_without_a_shared_pair_record_nothing():
    single = with_options(pair_config("shallow FC", 0, epochs=1), diagnostics={"every": 1})
    raw = single.model_dump(mode="json")
    raw["tasks"], raw["loss"]["weights"] = ["leq"], {}
    single = parse_config(raw)
    result = fit(build(single, PAIR_TASKS, (2, 14, 14)), pair_splits(0), single, tasks=CLASSES, device=CPU)
    assert not any(k.startswith("grad.") for k in result.history[-1])


def test_representation_gradients_are_taken_down_to_the_trunk():
    from test_replicas import FASHION_TASKS, bn_cnn_config, fashion_splits

    classes = {t: task.num_classes for t, task in FASHION_TASKS.items()}
    records = []
    for gradients in ("parameters", "representation"):
        c = bn_cnn_config(0, epochs=1)
        raw = c.model_dump(mode="json")
        raw["loss"] = {"method": "mean", "gradients": gradients}
        raw["train"]["diagnostics"] = {"every": 1}
        c = parse_config(raw)
        records.append(fit(build(c, FASHION_TASKS, (1, 12, 12)), fashion_splits(0), c, tasks=classes,
                           device=CPU).history[0])
    # Both measure the trunk's parameters here (the heads read the trunk alone, nothing above it is shared).
    for stat in STATS:
        key = f"grad.item~group.{stat}"
        assert records[1][key] == pytest.approx(records[0][key], rel=1e-4, abs=1e-6), key


def test_diagnostics_option_validates():
    from mtlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.diagnostics\.every"):
        with_options(pair_config("shallow FC", 0), diagnostics={"every": 0})
