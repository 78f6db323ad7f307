"""Task types against scikit-learn and torch, parametrised over the registry (a new type needs a case in
:func:`random_case`, or :func:`test_every_type_has_a_case` fails)."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from mtlab.tasks import TASK_TYPES, Task
from mtlab.tasks.binary import auroc

K = 3
BATCHES = (7, 13, 5, 11)  # unequal batch sizes
MISSING = 0.1
CPU = torch.device("cpu")
HEIGHT, WIDTH = 3, 5  # dense cases: small maps, odd sizes


@dataclass
class Case:
    task: Task
    train: list[torch.Tensor]  # replica k's training targets (N_k[, L])
    batches: list[tuple[torch.Tensor, torch.Tensor]]  # (outputs (K, B, O), targets (K, B[, L]))


def _missing(targets: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Targets with ~10% of the entries (cells) missing: -1 for integer targets, NaN for float ones."""
    drop = torch.rand(targets.shape, generator=g) < MISSING
    return targets.masked_fill(drop, -1 if not targets.is_floating_point() else float("nan"))


def random_case(type_name: str, g: torch.Generator, sizes=BATCHES, **options) -> Case:
    """A task of ``type_name`` with K replicas' training targets and a split's batches of outputs and targets."""
    if type_name == "multiclass":
        c = 4
        task = Task("digit", tuple(f"c{i}" for i in range(c)), "multiclass")

        def targets(n, k=K):
            return _missing(torch.randint(0, c, (k, n), generator=g), g)

        def outputs(t):
            return torch.randn(*t.shape, c, generator=g) + 1.5 * F.one_hot(t.clamp_min(0), c)

    elif type_name in ("binary", "multilabel"):
        labels = options.get("labels", 3) if type_name == "multilabel" else 1
        names = tuple(f"a{i}" for i in range(labels)) if type_name == "multilabel" else ("no", "yes")
        task = Task("attr", names, type_name)
        shape = () if type_name == "binary" else (labels,)

        def targets(n, k=K):
            return _missing((torch.rand(k, n, *shape, generator=g) < 0.4).float(), g)

        def outputs(t):
            # Logits rounded to 0.5: many ties, between positives and negatives too.
            cells = t.unsqueeze(-1) if t.ndim == 2 else t
            return torch.round(2 * (torch.randn(cells.shape, generator=g) + cells.nan_to_num(0))) / 2

    elif type_name == "regression":
        o = options.get("outputs", 2)
        task = Task("age", tuple(f"y{i}" for i in range(o)), "regression", loss=options.get("loss", "huber"))
        shape = () if o == 1 and options.get("flat", True) else (o,)
        scale = torch.tensor([5.0, 0.3, 40.0])[:o]
        offset = torch.tensor([20.0, -3.0, 1000.0])[:o]

        def targets(n, k=K):
            y = torch.randn(k, n, o, generator=g) * scale * torch.arange(1, k + 1)[:, None, None] + offset
            return _missing(y.reshape(k, n, *shape), g)

        def outputs(t):
            return torch.randn(t.shape[0], t.shape[1], o, generator=g)

    elif type_name == "segmentation":
        c = 4
        task = Task("semantic", tuple(f"c{i}" for i in range(c)), "segmentation")

        def targets(n, k=K):
            return _missing(torch.randint(0, c, (k, n, HEIGHT, WIDTH), generator=g), g)

        def outputs(t):
            # (K, B, C, H, W): noise plus a bump at the true class, so some pixels are right and some wrong.
            bump = 1.5 * F.one_hot(t.clamp_min(0), c).permute(0, 1, 4, 2, 3)
            return torch.randn(*t.shape[:2], c, HEIGHT, WIDTH, generator=g) + bump

    elif type_name == "depth":
        task = Task("depth", ("depth",), "depth")

        def targets(n, k=K):
            return _missing(0.5 + 5 * torch.rand(k, n, 1, HEIGHT, WIDTH, generator=g), g)

        def outputs(t):
            return t.nan_to_num(2.0) + torch.randn(t.shape, generator=g)

    elif type_name == "normals":
        task = Task("normal", ("x", "y", "z"), "normals")

        def targets(n, k=K):
            y = F.normalize(torch.randn(k, n, 3, HEIGHT, WIDTH, generator=g), dim=2)
            drop = torch.rand(k, n, 1, HEIGHT, WIDTH, generator=g) < MISSING  # a whole pixel is missing
            return y.masked_fill(drop, float("nan"))

        def outputs(t):
            # Unnormalised outputs (any length), some near the target, some far from it.
            near = t.nan_to_num(0.0) + 0.4 * torch.randn(t.shape, generator=g)
            return near * (0.5 + 2 * torch.rand(t.shape[0], t.shape[1], 1, HEIGHT, WIDTH, generator=g))

    else:
        raise AssertionError(f"tests/test_tasks.py has no random case for the task type {type_name!r}: add one")
    train = [targets(int(n), 1)[0] for n in torch.randint(40, 60, (K,), generator=g)]
    batches = []
    for b in sizes:
        t = targets(b)
        batches.append((outputs(t).float(), t))
    return Case(task, train, batches)


def run(case: Case, replicas: slice = slice(None)) -> dict[str, list[float]]:
    """Bind the case's task for the replicas ``replicas`` and run one pass; the summary."""
    kind = case.task.task_type
    objective = kind.bind(case.task, case.train[replicas], CPU)
    totals = objective.totals()
    for outputs, targets in case.batches:
        outputs, targets = outputs[replicas], targets[replicas]
        totals.add(outputs, targets, objective.loss(outputs, targets))
    return totals.summary()


# --- what scikit-learn and torch say ------------------------------------------------------------------------------


def _train_stats(case: Case, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Replica k's training mean and population std per output (NaN ignored; std 0 -> 1), by numpy."""
    y = case.train[k].double().numpy().reshape(len(case.train[k]), -1)
    mean, std = np.nanmean(y, 0), np.nanstd(y, 0)
    return mean, np.where(std > 0, std, 1.0)


def _split(case: Case, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Replica k's outputs (N, O) and targets (N[, L]) over the split, as float64 numpy."""
    outputs = torch.cat([o[k] for o, _ in case.batches]).double().numpy()
    targets = torch.cat([t[k] for _, t in case.batches]).double().numpy()
    return outputs, targets


def _quiet(metric, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _angles(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Angles in degrees between outputs and targets (N, 3, H, W) at the pixels with a normal, by numpy."""
    p = np.moveaxis(outputs, 1, -1).reshape(-1, 3)
    y = np.moveaxis(targets, 1, -1).reshape(-1, 3)
    keep = ~np.isnan(y).any(1)
    p, y = p[keep], y[keep]
    cos = (p * y).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(y, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def reference_metrics(case: Case, k: int) -> dict[str, float]:
    """Replica k's metrics by scikit-learn and numpy, over the labelled examples (cells, pixels) of the whole split."""
    outputs, targets = _split(case, k)
    kind = case.task.type
    if kind == "segmentation":
        pred = outputs.argmax(1).reshape(-1)
        y = targets.reshape(-1)
        keep = y >= 0
        return {
            "miou": _quiet(jaccard_score, y[keep], pred[keep], average="macro"),
            "pixel_acc": accuracy_score(y[keep], pred[keep]),
        }
    if kind == "depth":
        keep = ~np.isnan(targets)
        error = np.abs(outputs[keep] - targets[keep])
        return {"abs_err": error.mean(), "rel_err": (error / targets[keep]).mean()}
    if kind == "normals":
        angles = _angles(outputs, targets)
        return {
            "mean_angle": angles.mean(),
            "median_angle": float(np.median(angles)),
            "within_11_25": (angles < 11.25).mean(),
            "within_22_5": (angles < 22.5).mean(),
            "within_30": (angles < 30).mean(),
        }
    if kind == "multiclass":
        keep = targets >= 0
        y, pred = targets[keep], outputs[keep].argmax(1)
        return {"acc": accuracy_score(y, pred), "f1": _quiet(f1_score, y, pred, average="macro")}
    if kind in ("binary", "multilabel"):
        targets = targets.reshape(len(targets), -1)
        per_label = {"acc": [], "f1": [], "auroc": []}
        for label in range(targets.shape[1]):
            keep = ~np.isnan(targets[:, label])
            y, score = targets[keep, label], outputs[keep, label]
            if not keep.any():
                continue
            per_label["acc"].append(accuracy_score(y, score > 0))
            per_label["f1"].append(_quiet(f1_score, y, score > 0))
            per_label["auroc"].append(roc_auc_score(y, score) if len(set(y)) == 2 else math.nan)
        return {name: _nanmean(values) for name, values in per_label.items()}
    if kind == "regression":
        mean, std = _train_stats(case, k)
        targets = targets.reshape(len(targets), -1)
        predictions = outputs * std + mean
        per_output = {"mae": [], "rmse": [], "r2": []}
        for o in range(targets.shape[1]):
            keep = ~np.isnan(targets[:, o])
            y, p = targets[keep, o], predictions[keep, o]
            if not keep.any():
                continue
            per_output["mae"].append(mean_absolute_error(y, p))
            per_output["rmse"].append(math.sqrt(mean_squared_error(y, p)))
            per_output["r2"].append(_quiet(r2_score, y, p))
        return {name: _nanmean(values) for name, values in per_output.items()}
    raise AssertionError(kind)


def reference_loss(case: Case, k: int, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Torch's own loss of replica k on the labelled examples (cells) of ``outputs`` (B, O), ``targets`` (B[, L])."""
    task = case.task
    if task.type == "multiclass":
        keep = targets >= 0
        return F.cross_entropy(outputs[keep], targets[keep]).item()
    if task.type == "segmentation":  # (B, C, H, W) logits: one row per pixel
        keep = targets >= 0
        return F.cross_entropy(outputs.movedim(1, -1)[keep], targets[keep]).item()
    if task.type == "depth":
        keep = ~torch.isnan(targets)
        return F.l1_loss(outputs[keep], targets[keep]).item()
    if task.type == "normals":
        keep = ~torch.isnan(targets).any(1)  # (B, H, W)
        return 1 - F.cosine_similarity(outputs, targets, dim=1)[keep].mean().item()
    if task.type in ("binary", "multilabel"):
        targets = targets.reshape(outputs.shape)
        keep = ~torch.isnan(targets)
        return F.binary_cross_entropy_with_logits(outputs[keep], targets[keep]).item()
    if task.type == "regression":
        mean, std = (torch.from_numpy(v).float() for v in _train_stats(case, k))
        z = (targets.reshape(outputs.shape) - mean) / std
        keep = ~torch.isnan(z)
        loss = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}[task.loss]
        return loss(outputs[keep], z[keep]).item()
    raise AssertionError(task.type)


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=tol, abs=tol)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- every type ---------------------------------------------------------------------------------------------------

TYPES = TASK_TYPES.names()


def test_the_builtin_types_are_registered():
    assert {"multiclass", "binary", "multilabel", "regression", "segmentation", "depth", "normals"} <= set(TYPES)


def _channel_axis(kind) -> int:
    """The output axis of the task's O values: last of (K, B, O), the channels of (K, B, O, H, W) maps."""
    return 2 if kind.dense else -1


@pytest.mark.parametrize("type_name", TYPES)
def test_every_type_has_a_case(type_name):
    case = random_case(type_name, _generator())
    kind = case.task.task_type
    outputs, targets = case.batches[0]
    assert outputs.shape[_channel_axis(kind)] == case.task.outputs
    for train in case.train:
        assert kind.check_targets(case.task, train) is None
    if kind.dense:
        assert outputs.shape[-2:] == targets.shape[-2:] == (HEIGHT, WIDTH)


@pytest.mark.parametrize("type_name", TYPES)
def test_directions_and_describe(type_name):
    kind = TASK_TYPES.get(type_name)
    assert kind.metrics
    assert all(d in ("max", "min") for d in kind.metrics.values())
    assert kind.primary in kind.metrics
    assert kind.direction("loss") == "min"
    assert kind.metric_names() == ["loss", *kind.metrics]
    task = random_case(type_name, _generator()).task
    described = task.describe()
    assert json.loads(json.dumps(described)) == described
    assert Task(task.name, tuple(described["names"]), described["type"], task.loss).describe() == described
    assert described["metrics"] == {name: kind.direction(name) for name in kind.metric_names()}
    assert described["primary"] == kind.primary


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_and_loss_match_sklearn_and_torch(type_name, seed):
    case = random_case(type_name, _generator(seed))
    kind = case.task.task_type
    objective = kind.bind(case.task, case.train, CPU)
    totals = objective.totals()
    losses = []  # per batch (K,)
    for outputs, targets in case.batches:
        loss = objective.loss(outputs, targets)
        assert loss.shape == (K,)
        for k in range(K):
            assert _close(loss[k].item(), reference_loss(case, k, outputs[k], targets[k])), (k, loss)
        totals.add(outputs, targets, loss)
        losses.append(loss)
    summary = totals.summary()
    assert list(summary) == kind.metric_names()
    assert all(len(values) == K for values in summary.values())
    for k in range(K):
        outputs, targets = _split(case, k)
        whole = reference_loss(
            case, k, torch.from_numpy(outputs).float(), torch.from_numpy(targets).to(case.batches[0][1].dtype)
        )
        assert _close(summary["loss"][k], whole, 1e-5), (k, summary["loss"][k], whole)
        for name, value in reference_metrics(case, k).items():
            assert _close(summary[name][k], value), (name, k, summary[name][k], value)


@pytest.mark.parametrize("type_name", TYPES)
def test_stacked_row_equals_single_replica(type_name):
    case = random_case(type_name, _generator(3))
    stacked = run(case)
    for k in range(K):
        alone = run(case, slice(k, k + 1))
        for name, values in alone.items():
            assert _close(stacked[name][k], values[0], 1e-9), (name, k)


def _all_missing(targets: torch.Tensor) -> torch.Tensor:
    return torch.full_like(targets, -1 if not targets.is_floating_point() else math.nan)


@pytest.mark.parametrize("type_name", TYPES)
def test_batch_without_labels_has_zero_loss_and_gradient(type_name):
    case = random_case(type_name, _generator(4))
    objective = case.task.task_type.bind(case.task, case.train, CPU)
    outputs, targets = case.batches[0]
    outputs = outputs.clone().requires_grad_()
    loss = objective.loss(outputs, _all_missing(targets))
    assert torch.equal(loss.detach(), torch.zeros(K))
    loss.sum().backward()
    assert torch.equal(outputs.grad, torch.zeros_like(outputs))
    # A split with no label at all: loss and every metric undefined.
    totals = objective.totals()
    totals.add(outputs.detach(), _all_missing(targets), loss.detach())
    assert all(math.isnan(v) for values in totals.summary().values() for v in values)


@pytest.mark.parametrize("type_name", TYPES)
def test_missing_labels_leave_no_nan_in_the_gradient(type_name):
    case = random_case(type_name, _generator(5))
    objective = case.task.task_type.bind(case.task, case.train, CPU)
    outputs, targets = case.batches[1]
    outputs = outputs.clone().requires_grad_()
    objective.loss(outputs, targets).sum().backward()
    assert torch.isfinite(outputs.grad).all()
    missing = targets < 0 if not targets.is_floating_point() else torch.isnan(targets)
    assert missing.any()
    if case.task.task_type.dense and missing.ndim < outputs.ndim:  # a class map: every channel of a missing pixel
        missing = missing.unsqueeze(2).expand_as(outputs)
    # Per example ((K, B) targets) or per cell ((K, B, L) targets): nothing flows to a missing label's outputs.
    assert (outputs.grad[missing] == 0).all()
    assert (outputs.grad[~missing] != 0).any()


@pytest.mark.parametrize("type_name", TYPES)
def test_empty_pass_is_undefined(type_name):
    case = random_case(type_name, _generator(6))
    totals = case.task.task_type.bind(case.task, case.train, CPU).totals()
    summary = totals.summary()
    assert list(summary) == case.task.task_type.metric_names()
    assert all(math.isnan(v) for values in summary.values() for v in values)


# --- per type -----------------------------------------------------------------------------------------------------


def test_binary_f1_without_positives_is_zero_like_sklearn():
    task = Task("t", ("no", "yes"), "binary")
    objective = task.task_type.bind(task, [torch.zeros(4)], CPU)
    totals = objective.totals()
    targets = torch.tensor([[0.0, 0.0, math.nan, 0.0]])
    outputs = torch.tensor([[[-1.0], [-2.0], [3.0], [-0.5]]])
    totals.add(outputs, targets, objective.loss(outputs, targets))
    summary = totals.summary()
    assert summary["f1"] == [_quiet(f1_score, [0, 0, 0], [0, 0, 0])] == [0.0]
    assert summary["acc"] == [1.0]
    assert math.isnan(summary["auroc"][0])  # one class only


def test_auroc_ties_and_missing_match_sklearn():
    g = _generator(7)
    for _ in range(20):
        n = int(torch.randint(2, 40, (1,), generator=g))
        scores = torch.randint(-3, 4, (5, n), generator=g).float()
        states = torch.randint(-1, 2, (5, n), generator=g).to(torch.int8)
        area = auroc(scores, states)
        for row in range(5):
            keep = states[row] >= 0
            y = states[row][keep].numpy()
            if len(set(y.tolist())) < 2:
                assert math.isnan(area[row])
            else:
                assert area[row].item() == pytest.approx(roc_auc_score(y, scores[row][keep].numpy()), abs=1e-12)


def test_multilabel_leaves_one_class_labels_out_of_the_auroc():
    case = random_case("multilabel", _generator(8), labels=3)
    for _, targets in case.batches:
        targets[:, :, 1] = torch.where(torch.isnan(targets[:, :, 1]), math.nan, 1.0)  # label 1: positives only
        targets[0, :, 2] = math.nan  # replica 0: label 2 has no labelled cell
    summary = run(case)
    for k in range(K):
        for name, value in reference_metrics(case, k).items():
            assert _close(summary[name][k], value), (name, k)
    # Only labels 0 and 2 have an AUROC (replica 0: label 0 only).
    outputs, targets = _split(case, 0)
    keep = ~np.isnan(targets[:, 0])
    assert summary["auroc"][0] == pytest.approx(roc_auc_score(targets[keep, 0], outputs[keep, 0]), abs=1e-9)


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
@pytest.mark.parametrize(("outputs", "flat"), [(1, True), (1, False), (3, False)])
def test_regression_losses_and_shapes(loss, outputs, flat):
    case = random_case("regression", _generator(9), outputs=outputs, flat=flat, loss=loss)
    summary = run(case)
    objective = case.task.task_type.bind(case.task, case.train, CPU)
    for k in range(K):
        mean, std = _train_stats(case, k)
        assert objective.mean[k, 0].numpy() == pytest.approx(mean, rel=1e-12)
        assert objective.std[k, 0].numpy() == pytest.approx(std, rel=1e-12)
        for name, value in reference_metrics(case, k).items():
            assert _close(summary[name][k], value), (name, k)
        for out, targets in case.batches:
            assert _close(objective.loss(out, targets)[k].item(), reference_loss(case, k, out[k], targets[k]))


def test_regression_metrics_follow_the_units_and_the_loss_does_not():
    case = random_case("regression", _generator(10), outputs=2)
    before = run(case)
    scale, shift = 4.0, 100.0
    moved = Case(
        case.task,
        [t * scale + shift for t in case.train],
        [(o, t * scale + shift) for o, t in case.batches],
    )
    after = run(moved)
    for k in range(K):
        assert after["loss"][k] == pytest.approx(before["loss"][k], rel=1e-5)
        assert after["mae"][k] == pytest.approx(scale * before["mae"][k], rel=1e-5)
        assert after["rmse"][k] == pytest.approx(scale * before["rmse"][k], rel=1e-5)
        assert after["r2"][k] == pytest.approx(before["r2"][k], rel=1e-5, abs=1e-6)


def test_regression_std_zero_counts_as_one_and_r2_of_a_constant():
    task = Task("t", ("y",), "regression", loss="mse")
    objective = task.task_type.bind(task, [torch.tensor([2.0, 2.0, math.nan])], CPU)
    assert objective.mean.flatten().tolist() == [2.0]
    assert objective.std.flatten().tolist() == [1.0]
    for outputs, r2 in ((torch.zeros(1, 2, 1), 1.0), (torch.ones(1, 2, 1), 0.0)):
        totals = objective.totals()
        targets = torch.tensor([[2.0, 2.0]])
        totals.add(outputs, targets, objective.loss(outputs, targets))
        assert totals.summary()["r2"] == [r2] == [r2_score([2.0, 2.0], outputs.flatten().numpy() + 2.0)]


def test_regression_rejects_an_unknown_loss():
    task = Task("t", ("y",), "regression", loss="hinge")
    with pytest.raises(ValueError, match="hinge"):
        task.task_type.bind(task, [torch.zeros(3)], CPU)


@pytest.mark.parametrize(
    ("task", "targets", "problem"),
    [
        (Task("t", ("no", "yes"), "binary"), torch.tensor([0.0, 1.0, math.nan]), None),
        (Task("t", ("no", "yes"), "binary"), torch.tensor([0.0, 2.0]), "2.0"),
        (Task("t", ("no", "yes"), "binary"), torch.tensor([0.0, math.inf]), "inf"),
        (Task("t", ("no", "yes"), "binary"), torch.tensor([[0.0, 1.0]]), "shape"),
        (Task("t", ("no", "yes"), "binary"), torch.tensor([0, 1]), "int64"),
        (Task("t", ("a", "b"), "multilabel"), torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), None),
        (Task("t", ("a", "b"), "multilabel"), torch.tensor([[0.0, 1.0, 1.0]]), "2 0/1 floats"),
        (Task("t", ("a", "b"), "multilabel"), torch.tensor([[0.0, 0.5]]), "0.5"),
        (Task("t", (), "multilabel"), torch.tensor([[0.0]]), "without label names"),
        (Task("t", ("y",), "regression"), torch.tensor([1.5, math.nan]), None),
        (Task("t", ("y",), "regression"), torch.tensor([[1.5], [2.0]]), None),
        (Task("t", ("y", "z"), "regression"), torch.tensor([[1.5, math.nan]]), None),
        (Task("t", ("y",), "regression"), torch.tensor([1.5, math.inf]), "infinite"),
        (Task("t", ("y", "z"), "regression"), torch.tensor([1.5, 2.0]), "shape"),
        (Task("t", ("y",), "regression"), torch.zeros(2, 1, 1), "shape"),
        (Task("t", ("y",), "regression"), torch.tensor([1, 2]), "float"),
        (Task("t", (), "regression"), torch.tensor([1.0]), "without output names"),
        (Task("t", ("a", "b"), "segmentation"), torch.tensor([[[0, 1], [-1, 1]]]), None),
        (Task("t", ("a", "b"), "segmentation"), torch.tensor([[[0, 1], [-1, 1]]], dtype=torch.int16), None),
        (Task("t", ("a", "b"), "segmentation"), torch.tensor([[[0, 2]]]), "class index 2"),
        (Task("t", ("a", "b"), "segmentation"), torch.tensor([[0, 1]]), "(N, H, W)"),
        (Task("t", ("a", "b"), "segmentation"), torch.tensor([[[0.0, 1.0]]]), "float32"),
        (Task("t", (), "segmentation"), torch.tensor([[[0]]]), "without class names"),
        (Task("t", ("d",), "depth"), torch.tensor([[[[1.5, math.nan]]]]), None),
        (Task("t", ("d",), "depth"), torch.tensor([[[1.5, 2.0]]]), "(N, 1, H, W)"),
        (Task("t", ("d",), "depth"), torch.tensor([[[[1.5, 0.0]]]]), "> 0"),
        (Task("t", ("d",), "depth"), torch.tensor([[[[1.5, math.inf]]]]), "infinite"),
        (Task("t", ("d",), "depth"), torch.tensor([[[[1, 2]]]]), "int64"),
        (Task("t", ("x", "y", "z"), "normals"), torch.tensor([[[[0.0]], [[0.6]], [[0.8]]]]), None),
        (Task("t", ("x", "y", "z"), "normals"), torch.full((1, 3, 1, 1), math.nan), None),
        (Task("t", ("x", "y", "z"), "normals"), torch.tensor([[[[0.0]], [[math.nan]], [[0.8]]]]), "all three"),
        (Task("t", ("x", "y", "z"), "normals"), torch.zeros(1, 2, 1, 1), "(N, 3, H, W)"),
    ],
)
def test_check_targets(task, targets, problem):
    found = task.task_type.check_targets(task, targets)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_multiclass_macro_f1_with_absent_classes_matches_sklearn():
    task = Task("t", ("a", "b", "c", "d"), "multiclass")
    objective = task.task_type.bind(task, [torch.zeros(1, dtype=torch.long)], CPU)
    totals = objective.totals()
    targets = torch.tensor([[0, 0, 1, -1, 1, 0]])
    outputs = F.one_hot(torch.tensor([[0, 2, 1, 3, 0, 0]]), 4).float()  # class 3 never true nor predicted (kept)
    totals.add(outputs, targets, objective.loss(outputs, targets))
    keep = targets[0] >= 0
    expected = _quiet(f1_score, targets[0][keep].numpy(), outputs[0].argmax(1)[keep].numpy(), average="macro")
    assert totals.summary()["f1"][0] == pytest.approx(expected, abs=1e-12)


def test_types_with_a_confusion_matrix_sum_it_only_when_asked_and_equal_scikit_learns():
    for name, kind in TASK_TYPES.items():
        if not kind.has_confusion:
            continue
        case = random_case(name, torch.Generator().manual_seed(5))
        objective = kind.bind(case.task, case.train, CPU)
        plain, asked = objective.totals(), objective.totals(confusion=True)
        for outputs, targets in case.batches:
            loss = objective.loss(outputs, targets)
            plain.add(outputs, targets, loss)
            asked.add(outputs, targets, loss)
        assert plain.confusion(0) is None  # training passes keep the per-class counts only
        assert plain.summary() == asked.summary()
        for k in range(K):
            y = torch.cat([t[k] for _, t in case.batches])
            pred = torch.cat([o[k].argmax(1 if kind.dense else -1) for o, _ in case.batches])
            keep = y >= 0
            expected = confusion_matrix(y[keep], pred[keep], labels=range(case.task.outputs))
            assert asked.confusion(k) == expected.tolist()


# --- dense types: hand computations ---------------------------------------------------------------------------------


def _one_pass(task: Task, batches: list[tuple[torch.Tensor, torch.Tensor]], confusion: bool = False):
    objective = task.task_type.bind(task, [batches[0][1][0]], CPU)
    totals = objective.totals(confusion=confusion)
    losses = []
    for outputs, targets in batches:
        loss = objective.loss(outputs, targets)
        losses.append(loss)
        totals.add(outputs, targets, loss)
    return totals, losses


def test_segmentation_by_hand_is_over_the_whole_split_not_per_batch():
    # Two 2 x 2 images, one per batch; 4 classes, class 3 never true nor predicted. Pixels (true -> predicted):
    # image 1: 0->0, 0->1, 1->1, and an unlabelled pixel predicted 2; image 2: 2->2, 2->0, 1->1, 0->0.
    task = Task("semantic", ("a", "b", "c", "d"), "segmentation")
    true = [torch.tensor([[0, 0], [1, -1]]), torch.tensor([[2, 2], [1, 0]])]
    pred = [torch.tensor([[0, 1], [1, 2]]), torch.tensor([[2, 0], [1, 0]])]
    # outputs (1, 1, 4, 2, 2) logits peaked at the predicted class, targets (1, 1, 2, 2)
    logits = [3.0 * F.one_hot(p, 4).permute(2, 0, 1).float()[None, None] for p in pred]
    batches = [(o, t[None, None]) for o, t in zip(logits, true, strict=True)]
    totals, _ = _one_pass(task, batches, confusion=True)
    assert totals.confusion(0) == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    summary = totals.summary()
    # IoU: a 2/(3+3-2), b 2/(2+3-2), c 1/(2+1-1); d has an empty union and is left out.
    assert summary["miou"][0] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3, abs=1e-12)
    assert summary["pixel_acc"][0] == pytest.approx(5 / 7, abs=1e-12)
    # The mean of per-image mIoUs (the MTAN reference's printout) would be (1/2 + 2/3) / 2, not this.
    assert summary["miou"][0] != pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-3)


def test_depth_by_hand():
    task = Task("depth", ("depth",), "depth")
    targets = torch.tensor([2.0, 4.0, math.nan, 1.0]).view(1, 1, 1, 2, 2)
    outputs = torch.tensor([3.0, 3.0, 100.0, 1.5]).view(1, 1, 1, 2, 2)
    totals, losses = _one_pass(task, [(outputs, targets)])
    summary = totals.summary()
    assert losses[0].item() == pytest.approx(2.5 / 3)
    assert summary["abs_err"] == pytest.approx([2.5 / 3], abs=1e-12)
    assert summary["rel_err"] == pytest.approx([(1 / 2 + 1 / 4 + 0.5 / 1) / 3], abs=1e-12)
    assert summary["loss"] == pytest.approx([2.5 / 3], abs=1e-7)


def _at_angle(degrees: float, length: float = 1.0) -> list[float]:
    """A vector at ``degrees`` from +z, in the x-z plane."""
    return [length * math.sin(math.radians(degrees)), 0.0, length * math.cos(math.radians(degrees))]


def test_normals_by_hand_over_two_batches():
    # Targets all +z, one pixel without a normal; outputs at 0, 10, 20, 45, 180 degrees (of any length) and a zero
    # vector, which points nowhere: cos 0, 90 degrees.
    task = Task("normal", ("x", "y", "z"), "normals")
    first = torch.tensor([_at_angle(0, 2.0), _at_angle(10, 0.5), _at_angle(45), _at_angle(70)])
    second = torch.tensor([_at_angle(180, 3.0), _at_angle(20), [0.0, 0.0, 0.0]])
    batches = []
    for vectors, missing in ((first, 3), (second, None)):
        outputs = vectors.T.reshape(1, 1, 3, 1, -1)  # (K=1, B=1, 3, H=1, W)
        targets = torch.zeros_like(outputs)
        targets[:, :, 2] = 1.0
        if missing is not None:
            targets[..., missing] = math.nan  # the 70-degree pixel has no normal
        batches.append((outputs, targets))
    totals, losses = _one_pass(task, batches)
    angles = [0, 10, 45, 180, 20, 90]
    summary = totals.summary()
    assert summary["mean_angle"][0] == pytest.approx(sum(angles) / 6, abs=1e-5)  # float32 outputs
    assert summary["median_angle"][0] == pytest.approx((20 + 45) / 2, abs=1e-5)  # even count: the two middle ones
    assert summary["within_11_25"] == [2 / 6]
    assert summary["within_22_5"] == [3 / 6]
    assert summary["within_30"] == [3 / 6]
    one_minus_cos = [1 - math.cos(math.radians(a)) for a in angles]
    assert losses[0].item() == pytest.approx(sum(one_minus_cos[:3]) / 3, abs=1e-6)
    assert summary["loss"][0] == pytest.approx(sum(one_minus_cos) / 6, abs=1e-6)


def test_normals_median_is_exact_not_binned():
    # Three angles a ten-thousandth of a degree apart: a histogram of 0.01-degree bins cannot tell them apart.
    task = Task("normal", ("x", "y", "z"), "normals")
    angles = [30.0001, 30.0003, 30.0002]
    outputs = torch.tensor([_at_angle(a) for a in angles], dtype=torch.float64).T.reshape(1, 1, 3, 1, 3).float()
    targets = torch.zeros_like(outputs)
    targets[:, :, 2] = 1.0
    totals, _ = _one_pass(task, [(outputs, targets)])
    expected = float(np.median(_angles(outputs[0].double().numpy(), targets[0].double().numpy())))
    assert expected == pytest.approx(30.0002, abs=2e-5)  # float32 outputs: the angles move by ~1e-5 degrees
    assert totals.summary()["median_angle"][0] == pytest.approx(expected, abs=1e-5)
