"""``mtlab.Weighting`` in a loop of one's own (issue 28): it equals mtlab's trainer step for step for every method,
equals TorchJD's ``mtl_backward`` for the gradient methods TorchJD has, resumes exactly, refuses a hook that was not
run, and skips a non-finite step leaving the method's state untouched (issue 29, section 2)."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mtlab
from mtlab import seeding
from mtlab.config import parse_config
from mtlab.data.batches import Normalizer, ReplicaBatches
from mtlab.errors import ConfigError, MtlabError
from mtlab.train.fit import as_task, fit
from mtlab.train.optim import build_optimizer, build_schedule
from mtlab.train.replicas import SingleReplica, parameter_views
from mtlab.weighting import gradient_methods, registered_methods
from mtlab.weighting.base import GradientMethod
from test_replicas import PAIR_NETS, PAIR_TASKS, build, pair_splits

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]

# Options the registry's defaults need for a short run to exercise the method (STCH's warm-up ends after epoch 1).
SHORT_RUN = {"stch": {"warmup_epochs": 1}}


# -------------------------------------------------------------------------------------- a user's own model


class TwoHeads(nn.Module):
    """A trunk and two classification heads: the smallest multi-task net."""

    def __init__(self, inputs: int = 6, hidden: int = 10, dtype=torch.float32):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(inputs, hidden, dtype=dtype), nn.Tanh(),
                                   nn.Linear(hidden, hidden, dtype=dtype), nn.Tanh())
        self.heads = nn.ModuleDict({"a": nn.Linear(hidden, 3, dtype=dtype), "b": nn.Linear(hidden, 2, dtype=dtype)})

    def forward(self, x, features=False):
        h = self.trunk(x)
        out = {t: head(h) for t, head in self.heads.items()}
        return (out, h) if features else out


def batches(count: int, size: int = 12, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = torch.randn(size, 6, generator=g, dtype=dtype)
        y = {"a": torch.randint(0, 3, (size,), generator=g), "b": torch.randint(0, 2, (size,), generator=g)}
        out.append((x, y))
    return out


def task_losses(model, batch):
    x, y = batch
    out = model(x)
    return {t: F.cross_entropy(out[t], y[t]) for t in ("a", "b")}


def make(name: str, model: TwoHeads, seed: int = 0, **extra) -> mtlab.Weighting:
    return mtlab.Weighting(name, tasks=["a", "b"], shared=model.trunk.parameters(),
                           last_shared=model.trunk[2].parameters(), steps_per_epoch=3, epochs=3,
                           generator=torch.Generator().manual_seed(seed), **{**SHORT_RUN.get(name, {}), **extra})


def generic_loop(weighting, model, optimizer, data, start: int = 0, stop: int | None = None, poison=None,
                 where: str = "losses", leave_out=None):
    """The loop every method runs in: all hooks called, double sampling through the closure form, an epoch every
    3 batches. ``poison``: the step whose losses (or one shared parameter's task gradients) are made infinite;
    ``leave_out``: a step not taken at all (the reference for a poisoned one)."""
    applied = []
    for i, batch in enumerate(data[start:stop], start):
        meta_batch = data[len(data) - 1 - i]  # another batch of the training data (Auto-Lambda)
        if i != leave_out:
            weighting.look_ahead(model, optimizer, lambda b: task_losses(model, b), batch, meta_batch)
            optimizer.zero_grad()
            hook = model.trunk[0].weight.register_hook(lambda g: g * math.inf) \
                if i == poison and where == "gradients" else None

            def closure(half, batch=batch, i=i):
                losses = task_losses(model, (half(batch[0]), {t: half(v) for t, v in batch[1].items()}))
                return {t: v * math.inf for t, v in losses.items()} if i == poison and where == "losses" else losses

            ok = weighting.backward(closure)
            if hook is not None:
                hook.remove()
            applied.append(ok)
            if ok:
                optimizer.step()
            with torch.no_grad():
                weighting.after_step(task_losses(model, batch))
        if (i + 1) % 3 == 0:
            weighting.end_epoch()
    return applied


def fresh(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = TwoHeads()
    weighting = make(name, model, seed)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=0.01)
    return model, weighting, optimizer


def method_state(weighting):
    return {k: v.clone() for k, v in weighting.method.state_dict().items()}


def assert_same_tensors(a: dict, b: dict, tolerance: float = 0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert torch.allclose(a[key].double(), b[key].double(), atol=tolerance, rtol=0, equal_nan=True), key


# ------------------------------------------------------------------------------ the same as mtlab's trainer


def pair_run_config(name: str, epochs: int = 3):
    return parse_config({
        "seed": 3,
        "data": {"dataset": "mnist-pairs", "normalize": False},
        "model": {"kind": "pairs", "weight_sharing": True, **PAIR_NETS["shallow FC"]},
        "loss": {"method": name, **SHORT_RUN.get(name, {})},
        # No gradient clipping: the trainer's per-replica clip and torch's clip_grad_norm_ sum the squares in
        # different orders, and SDMGrad's inner descent amplifies that rounding past 1e-6 in 21 steps.
        "optim": {"lr": 0.003},
        "train": {"epochs": epochs, "batch_size": 32},
    })


def own_loop_like_the_trainer(config, model, splits):
    """The trainer's protocol written as a plain loop over ``model`` with the public object: the same batches
    (seeded streams), optimiser, schedule and hooks."""
    tasks = config.task_names
    objectives = {t: as_task(t, PAIR_TASKS[t]).task_type.bind(as_task(t, PAIR_TASKS[t]), [splits.train.labels[t]],
                                                               CPU) for t in tasks}
    views = parameter_views(model, SingleReplica(model))
    owned = {t: views.owned[t] for t in tasks}
    steps = math.ceil(len(splits.train) / config.train.batch_size)
    weighting = mtlab.Weighting(config.loss, tasks=tasks, shared=views.shared, task_parameters=owned,
                                last_shared=views.last_shared, steps_per_epoch=steps, epochs=config.train.epochs,
                                generator=seeding.generator(config.seed, "weighting"))
    normalizer = Normalizer.fit(splits.train.images, standardize=config.data.normalize)

    def loader(stream, shuffle):
        return ReplicaBatches([splits.train], config.train.batch_size, [normalizer], shuffle=shuffle,
                              generators=[seeding.generator(config.seed, stream)], tasks=tasks)

    def losses_of(batch):
        x, y = batch
        out = model(x[0])
        return {t: objectives[t].loss(out[t][None], y[t]) for t in tasks}

    optimizer = build_optimizer(config.optim, model.parameters(), extra=weighting.parameters())
    schedule = build_schedule(config.optim, optimizer, config.train.epochs * steps, steps_per_epoch=steps)
    meta_loader = loader("meta batches", True)  # pass after pass, each in an order of its own
    meta = itertools.chain.from_iterable(meta_loader for _ in itertools.count())
    torch.manual_seed(seeding.stream_seed(config.seed, "dropout"))
    train = loader("batches", config.train.shuffle)
    for _ in range(config.train.epochs):
        sums, count = torch.zeros(len(tasks)), 0
        for x, y in train:
            weighting.look_ahead(model, optimizer, losses_of, (x, y), next(meta))
            optimizer.zero_grad(set_to_none=True)
            seen = []

            def closure(half, x=x, y=y, seen=seen):
                losses = losses_of((half(x, dim=1), {t: half(v, dim=1) for t, v in y.items()}))
                seen.append((half.share, torch.stack([losses[t].detach()[0] for t in tasks])))
                return losses

            weighting.backward(closure)
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                weighting.after_step(losses_of((x, y)))
            n = x.shape[1]
            sums += sum(share * losses for share, losses in seen) * n
            count += n
        weighting.end_epoch({t: sums[i] / count for i, t in enumerate(tasks)})
    return weighting


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", registered_methods())
def test_own_loop_equals_the_trainer(name):
    """Three epochs (21 steps, a last short batch, every hook: DWA's and STCH's epochs, FAMO's losses after the
    step, GradNorm's layer, MoDo's halves, Auto-Lambda's look-ahead): the same parameters to 1e-6."""
    config = pair_run_config(name)
    splits = pair_splits(0)
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    trained = build(config, PAIR_TASKS, (2, 14, 14))
    mine = build(config, PAIR_TASKS, (2, 14, 14))
    result = fit(trained, splits, config, tasks=classes, device=CPU)
    weighting = own_loop_like_the_trainer(config, mine, splits)
    for (key, a), b in zip(trained.state_dict().items(), mine.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (key, (a - b).abs().max())
    assert_same_tensors(result.weighting_state, {k: v[0] for k, v in weighting.method.state_dict().items()}, 1e-6)


# ---------------------------------------------------------------------------------------------- TorchJD


def torchjd_aggregators():
    A = pytest.importorskip("torchjd.aggregation")
    return {
        "upgrad": (A.UPGrad(), {}, 1e-6),
        "mgda": (A.MGDA(epsilon=1e-12, max_iters=100000), {}, 1e-4),
        "dualproj": (A.DualProj(), {}, 1e-6),
        "pcgrad": (A.PCGrad(), {}, 1e-6),
        "mean": (A.Mean(), {}, 1e-6),
        "imtl_g": (A.IMTLG(), {}, 1e-6),
        "aligned_mtl": (A.AlignedMTL(), {}, 1e-6),
        "config": (A.ConFIG(), {}, 1e-6),
        "cagrad": (A.CAGrad(c=0.5), {"c": 0.5, "rescale": False}, 1e-3),
        "gradvac": (A.GradVac(beta=0.01), {"beta": 0.01}, 1e-6),
    }


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["upgrad", "mgda", "dualproj", "pcgrad", "mean", "imtl_g", "aligned_mtl",
                                  "config", "cagrad", "gradvac"])
def test_update_equals_torchjd_mtl_backward(name):
    """On a user's own model, three steps of SGD: every parameter's gradient equals TorchJD's ``mtl_backward`` +
    ``jac_to_grad`` with the matching aggregator (task parameters found in the graph by both)."""
    autojac = pytest.importorskip("torchjd.autojac")
    aggregator, options, tolerance = torchjd_aggregators()[name]
    torch.manual_seed(0)
    mine_model = TwoHeads()
    theirs = copy.deepcopy(mine_model)
    weighting = mtlab.Weighting(name, tasks=["a", "b"], shared=mine_model.trunk.parameters(), **options)
    sgd = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (mine_model, theirs)]
    for batch in batches(3):
        for optimizer in sgd:
            optimizer.zero_grad()
        weighting.backward(task_losses(mine_model, batch))
        out, features = theirs(batch[0], features=True)
        losses = [F.cross_entropy(out[t], batch[1][t]) for t in ("a", "b")]
        autojac.mtl_backward(losses, features=features)
        autojac.jac_to_grad(list(theirs.trunk.parameters()), aggregator)
        for (key, p), q in zip(mine_model.named_parameters(), theirs.parameters(), strict=True):
            error = ((p.grad - q.grad).norm() / q.grad.norm().clamp(min=1e-12)).item()
            assert error < tolerance, (key, error)
        for optimizer in sgd:
            optimizer.step()


def test_representation_level_mgda_goes_down_the_trunk():
    """``gradients="representation"`` (MGDA-UB): the heads keep their own gradients; the trunk gets the MGDA
    combination of the representation's task gradients, back-propagated once."""
    torch.manual_seed(1)
    model = TwoHeads(dtype=torch.float64)
    x, y = batches(1, dtype=torch.float64)[0]
    weighting = mtlab.Weighting("mgda", tasks=["a", "b"], gradients="representation")
    out, features = model(x, features=True)
    weighting.backward({t: F.cross_entropy(out[t], y[t]) for t in out}, features=features)

    out, features = model(x, features=True)
    rows = [torch.autograd.grad(F.cross_entropy(out[t], y[t]), features, retain_graph=True)[0] for t in ("a", "b")]
    from mtlab.weighting import aggregate

    combined = aggregate("mgda", torch.stack([r.flatten() for r in rows])).view_as(features)
    expected = torch.autograd.grad(features, list(model.trunk.parameters()), combined)
    for p, e in zip(model.trunk.parameters(), expected, strict=True):
        assert torch.allclose(p.grad, e, atol=1e-10)
    head = torch.autograd.grad(F.cross_entropy(out["a"], y["a"]), list(model.heads["a"].parameters()))
    for p, e in zip(model.heads["a"].parameters(), head, strict=True):
        assert torch.allclose(p.grad, e, atol=1e-12)


def test_gradients_accumulate_as_tensor_backward_does():
    torch.manual_seed(2)
    model = TwoHeads()
    weighting = mtlab.Weighting("fixed", tasks=["a", "b"], shared=model.trunk.parameters())
    batch = batches(1)[0]
    weighting.backward(task_losses(model, batch))
    once = [p.grad.clone() for p in model.parameters()]
    weighting.backward(task_losses(model, batch))
    for p, g in zip(model.parameters(), once, strict=True):
        assert torch.allclose(p.grad, 2 * g, atol=1e-6)


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", registered_methods())
def test_resumed_loop_continues_exactly(name):
    """State saved after 4 steps and loaded into a fresh object (model and optimiser restored too) continues to the
    same parameters and method state as an uninterrupted loop of 8 steps."""
    data = batches(8)
    model, weighting, optimizer = fresh(name)
    generic_loop(weighting, model, optimizer, data)

    model2, weighting2, optimizer2 = fresh(name)
    generic_loop(weighting2, model2, optimizer2, data, stop=4)
    saved = (copy.deepcopy(model2.state_dict()), copy.deepcopy(optimizer2.state_dict()), weighting2.state_dict())
    model3, weighting3, optimizer3 = fresh(name, seed=5)  # another initialisation and generator: all overwritten
    model3.load_state_dict(saved[0])
    weighting3.load_state_dict(saved[2])
    optimizer3.load_state_dict(saved[1])
    generic_loop(weighting3, model3, optimizer3, data, start=4)
    assert_same_tensors(model.state_dict(), model3.state_dict())
    assert_same_tensors(method_state(weighting), method_state(weighting3))
    assert weighting.weights() == weighting3.weights()


# --------------------------------------------------------------------------------------------- non-finite


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("where", ["losses", "gradients"])
@pytest.mark.parametrize("name", registered_methods())
def test_non_finite_step_is_skipped_and_counted(name, where):
    """An inf at step 3 (in the losses, or in one task's gradient of the shared parameters): the step writes no
    gradient, leaves the method's state as it was, is counted, and the run goes on as if it had never been - equal
    to a run without that batch (failed before: moco, modo, sdmgrad, db_mtl, excess_mtl turned NaN for good;
    config, imtl, imtl_g raised LinAlgError)."""
    if where == "gradients" and name not in gradient_methods():
        pytest.skip("a loss-based method sees the losses, not the task gradients")
    data = batches(6)
    model, weighting, optimizer = fresh(name)
    applied = generic_loop(weighting, model, optimizer, data, poison=2, where=where)
    assert applied == [True, True, False, True, True, True]
    assert weighting.diagnostics()["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    reference, reference_weighting, reference_optimizer = fresh(name)
    generic_loop(reference_weighting, reference, reference_optimizer, data, leave_out=2)
    assert_same_tensors(method_state(weighting), method_state(reference_weighting), 1e-6)
    assert_same_tensors(model.state_dict(), reference.state_dict(), 1e-6)


@pytest.mark.parametrize("name", ["moco", "uncertainty", "famo"])
def test_skipped_step_under_a_grad_scaler_lowers_the_scale(name):
    """With ``scaler=``: an overflowing step writes the non-finite gradient, so the scaler skips the optimiser step
    and halves its scale, as for ``scaler.scale(loss).backward()``; the method's state stays. Loss-based methods
    (uncertainty, famo) too: before, they wrote no gradient and ``scaler.step`` raised "No inf checks were recorded"."""
    torch.manual_seed(0)
    model = TwoHeads()
    weighting = mtlab.Weighting(name, tasks=["a", "b"], shared=model.trunk.parameters())
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    data = batches(2)
    weighting.backward(task_losses(model, data[0]), scaler=scaler)
    scaler.step(optimizer)
    scaler.update()
    if weighting.needs_losses_after_step:
        with torch.no_grad():
            weighting.after_step(task_losses(model, data[0]))
    state, before = method_state(weighting), copy.deepcopy(model.state_dict())
    optimizer.zero_grad()
    if isinstance(weighting.method, GradientMethod):
        hook = model.trunk[0].weight.register_hook(lambda g: g * math.inf)
        assert not weighting.backward(task_losses(model, data[1]), scaler=scaler)
        hook.remove()
    else:  # an overflow in the losses themselves
        assert not weighting.backward({t: v * math.inf for t, v in task_losses(model, data[1]).items()},
                                      scaler=scaler)
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0
    assert_same_tensors(model.state_dict(), before)
    assert_same_tensors(method_state(weighting), state)


# ------------------------------------------------------------------------------------------------- hooks


def test_famo_without_after_step_is_refused_at_the_next_step():
    model, weighting, _ = fresh("famo")
    data = batches(2)
    weighting.backward(task_losses(model, data[0]))
    with pytest.raises(MtlabError, match=r"famo has an after-step hook .*after_step\(losses\)"):
        weighting.backward(task_losses(model, data[1]))
    with pytest.raises(MtlabError, match="famo needs the losses after each step"):
        weighting.after_step()


def test_gradnorm_without_after_step_is_refused():
    model, weighting, _ = fresh("gradnorm")
    data = batches(2)
    weighting.backward(task_losses(model, data[0]))
    with pytest.raises(MtlabError, match=r"gradnorm has an after-step hook .*after_step\(\)"):
        weighting.backward(task_losses(model, data[1]))


@pytest.mark.parametrize("name", ["dwa", "stch"])
def test_epoch_methods_refuse_a_step_past_the_epoch_without_end_epoch(name):
    model, weighting, _optimizer = fresh(name)
    data = batches(4)
    for batch in data[:3]:
        weighting.backward(task_losses(model, batch))
        weighting.after_step()
    with pytest.raises(MtlabError, match=rf"{name} updates its weights at the end of each epoch: call "
                                         r"weighting.end_epoch\(\).*steps_per_epoch=3"):
        weighting.backward(task_losses(model, data[3]))
    weighting.end_epoch()
    weighting.backward(task_losses(model, data[3]))
    with pytest.raises(MtlabError, match="pass steps_per_epoch"):
        mtlab.Weighting(name, tasks=["a", "b"])


def test_dwa_weights_move_in_a_plain_loop():
    """The defect of issue 28: DWA stayed at 1.0 in a user's loop (nothing called its end-of-epoch hook)."""
    model, weighting, optimizer = fresh("dwa")
    generic_loop(weighting, model, optimizer, batches(12))
    assert weighting.weights()["a"] != pytest.approx(1.0)


def test_double_sampling_needs_the_closure_form():
    model, weighting, _ = fresh("modo")
    with pytest.raises(MtlabError, match=r"modo takes two independent gradient samples .* backward\(closure\)"):
        weighting.backward(task_losses(model, batches(1)[0]))


def test_auto_lambda_needs_its_look_ahead():
    model, weighting, optimizer = fresh("auto_lambda")
    data = batches(2)
    with pytest.raises(MtlabError, match=r"auto_lambda looks ahead on a meta batch .* weighting.look_ahead\("):
        weighting.backward(task_losses(model, data[0]))
    weighting.look_ahead(model, optimizer, lambda b: task_losses(model, b), data[0], data[1])
    weighting.backward(task_losses(model, data[0]))
    assert weighting.weights()["a"] != pytest.approx(0.1)  # the look-ahead moved lambda from its start


def test_gradnorm_needs_the_last_shared_layer():
    with pytest.raises(MtlabError, match="gradnorm reads the gradients at the last shared layer: pass last_shared"):
        mtlab.Weighting("gradnorm", tasks=["a", "b"])


def test_gradient_methods_need_what_is_shared():
    with pytest.raises(MtlabError, match="pass shared="):
        mtlab.Weighting("upgrad", tasks=["a", "b"])
    weighting = mtlab.Weighting("upgrad", tasks=["a", "b"], gradients="representation")
    model = TwoHeads()
    with pytest.raises(MtlabError, match="features="):
        weighting.backward(task_losses(model, batches(1)[0]))


def test_bad_options_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"option temperature: .*greater than 0"):
        mtlab.Weighting("dwa", tasks=["a", "b"], steps_per_epoch=3, temperature=-1)
    with pytest.raises(ConfigError, match=r"option tempreature"):
        mtlab.Weighting("dwa", tasks=["a", "b"], steps_per_epoch=3, tempreature=2)
    with pytest.raises(ConfigError, match=r"unknown method 'upgrade'; did you mean 'upgrad'"):
        mtlab.Weighting("upgrade", tasks=["a", "b"])


def test_losses_must_name_the_tasks():
    model = TwoHeads()
    weighting = mtlab.Weighting("mean", tasks=["a", "b"], shared=model.trunk.parameters())
    with pytest.raises(MtlabError, match=r"missing \['b'\]"):
        weighting.backward({"a": task_losses(model, batches(1)[0])["a"]})


def test_weights_and_diagnostics_are_plain_dicts():
    model, weighting, optimizer = fresh("upgrad")
    generic_loop(weighting, model, optimizer, batches(2))
    weights, diagnostics = weighting.weights(), weighting.diagnostics()
    assert set(weights) == {"a", "b"}
    assert all(isinstance(v, float) for v in weights.values())
    assert {"steps", "skipped_steps", "grad.a.norm", "grad.b.norm", "grad.a~b.cos"} <= set(diagnostics)
    assert -1 <= diagnostics["grad.a~b.cos"] <= 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_any_float_dtype(dtype):
    torch.manual_seed(0)
    model = TwoHeads(dtype=dtype)
    weighting = mtlab.Weighting("upgrad", tasks=["a", "b"], shared=model.trunk.parameters())
    assert weighting.backward(task_losses(model, batches(1, dtype=dtype)[0]))
    assert all(p.grad.dtype == dtype for p in model.parameters())


# ------------------------------------------------------------------------------------------------ example


def load_example():
    spec = importlib.util.spec_from_file_location("own_loop_example", ROOT / "examples" / "own_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", registered_methods())
def test_example_runs_for_every_method(name, capsys):
    weights = load_example().main(["--method", name, "--steps", "2", "--batch-size", "16"])
    assert set(weights) == {"item", "group"}
    assert f"{name} after 2 steps: item" in capsys.readouterr().out


@pytest.mark.slow
def test_example_runs_as_a_script():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "own_loop.py"), "--method", "dwa", "--steps", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dwa after 2 steps: item 1.0000, group 1.0000" in done.stdout


# ------------------------------------------------------------------------------------- stacked replicas


class StackedNet:
    """K replicas of a linear trunk and two linear heads as stacked leaves (K, ...), the trainer's layout."""

    def __init__(self, replicas: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.trunk = (torch.randn(replicas, 6, 8, generator=g) / 3).requires_grad_()
        self.heads = {"a": (torch.randn(replicas, 8, 3, generator=g) / 3).requires_grad_(),
                      "b": (torch.randn(replicas, 8, 2, generator=g) / 3).requires_grad_()}

    def rows(self, k: int) -> StackedNet:
        solo = copy.copy(self)
        solo.trunk = self.trunk.detach()[k : k + 1].clone().requires_grad_()
        solo.heads = {t: v.detach()[k : k + 1].clone().requires_grad_() for t, v in self.heads.items()}
        return solo

    def parameters(self):
        return [self.trunk, *self.heads.values()]

    def losses(self, x, y, poisoned=None):
        """x (K, B, 6), y {task: (K, B)} -> {task: (K,)}; ``poisoned`` (K,) bool: those replicas' losses inf."""
        h = torch.tanh(torch.einsum("kbi,kio->kbo", x, self.trunk))
        out = {t: torch.einsum("kbi,kio->kbo", h, w) for t, w in self.heads.items()}
        losses = {t: F.cross_entropy(o.transpose(1, 2), y[t], reduction="none").mean(1) for t, o in out.items()}
        if poisoned is not None:
            factor = torch.where(poisoned, math.inf, 1.0)  # (K,): the other replicas' graphs stay finite
            losses = {t: v * factor for t, v in losses.items()}
        return losses


# MoCo with LibMTL's decaying step sizes beta / k^sigma: each replica's schedule follows its own step count.
LIBMTL_MOCO = {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("name", "extra"), [(name, {}) for name in registered_methods()] + [("moco", LIBMTL_MOCO)])
def test_a_replica_skipped_alone_leaves_the_others_as_their_solo_runs(name, extra):
    """K = 2 stacked replicas (mtlab's trainer), replica 0's losses infinite at step 2: replica 0's method state
    stays as it was and its rows get no gradient; replica 1 goes on exactly as its solo run."""
    from mtlab.weighting import create_method

    if mtlab.Weighting(name, tasks=["a", "b"], shared=[torch.zeros(1)], last_shared=[torch.zeros(1)],
                       steps_per_epoch=9, epochs=1).needs_meta_batch:
        pytest.skip("the look-ahead probe over stacked leaves is the trainer's (tested through test_replicas)")
    options = {"method": name, **SHORT_RUN.get(name, {}), **extra}
    g = torch.Generator().manual_seed(4)
    data = [(torch.randn(2, 8, 6, generator=g), {"a": torch.randint(0, 3, (2, 8), generator=g),
                                                 "b": torch.randint(0, 2, (2, 8), generator=g)}) for _ in range(3)]
    poison = torch.tensor([True, False])

    def run(net, replicas, rows, poisoned_step):
        method = create_method(options, ["a", "b"], replicas,
                               generators=[torch.Generator().manual_seed(10 + k) for k in rows])
        weighting = mtlab.Weighting.of(method, shared=[net.trunk], last_shared=[net.trunk], steps_per_epoch=9,
                                       epochs=1)
        states = []
        for step, (x, y) in enumerate(data):
            x, y = x[rows], {t: v[rows] for t, v in y.items()}
            poisoned = poison[rows] if step == poisoned_step else None
            for p in net.parameters():
                p.grad = None
            bad = weighting.backward_per_replica(lambda half, x=x, y=y, poisoned=poisoned: net.losses(
                half(x, dim=1), {t: half(v, dim=1) for t, v in y.items()}, poisoned))
            with torch.no_grad():
                for p in [*net.parameters(), *weighting.parameters()]:
                    if p.grad is not None:
                        p -= 0.1 * torch.where(bad.view(-1, *([1] * (p.dim() - 1))), 0.0, p.grad)
                weighting.after_step(net.losses(x, y))
            states.append({k: v.clone() for k, v in method.state_dict().items()})
        return states

    stacked = StackedNet(2)
    solo = stacked.rows(1)
    stacked_states = run(stacked, 2, [0, 1], poisoned_step=1)
    solo_states = run(solo, 1, [1], poisoned_step=None)
    assert torch.allclose(stacked.trunk[1:], solo.trunk, atol=1e-6)
    for t in ("a", "b"):
        assert torch.allclose(stacked.heads[t][1:], solo.heads[t], atol=1e-6)
    for key, value in solo_states[-1].items():
        if value.dim() > 0 and value.shape[0] == 1:
            assert torch.allclose(stacked_states[-1][key][1:].double(), value.double(), atol=1e-6,
                                  equal_nan=True), key
    for key, value in stacked_states[0].items():  # replica 0's state over the poisoned step: untouched
        if value.dim() > 0 and value.shape[0] == 2:
            assert torch.allclose(stacked_states[1][key][0], value[0], atol=0, rtol=0, equal_nan=True), key


def test_a_loss_method_measures_its_gradients_on_request():
    """``diagnose=True``: a loss-based method's diagnostics carry the task gradients' norms and cosine, equal to
    those a gradient method reads from its own Jacobian on the same batch."""
    torch.manual_seed(3)
    model = TwoHeads(dtype=torch.float64)
    batch = batches(1, dtype=torch.float64)[0]
    measured = mtlab.Weighting("fixed", tasks=["a", "b"], shared=model.trunk.parameters(), diagnose=True)
    measured.backward(task_losses(model, batch))
    reference = mtlab.Weighting("mean", tasks=["a", "b"], shared=model.trunk.parameters())
    reference.backward(task_losses(model, batch))
    mine, theirs = measured.diagnostics(), reference.diagnostics()
    for key in ("grad.a.norm", "grad.b.norm", "grad.a~b.cos"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-9)
