"""Weighting methods: the properties every method must have (parametrised over the registry, so a new method is
tested the day it is registered), golden values for the closed forms, agreement with TorchJD, stacked == solo."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from mtlab.config import parse_config
from mtlab.errors import ConfigError
from mtlab.weighting import (
    GradientMethod,
    LossMethod,
    aggregate,
    create_method,
    gradient_methods,
    method_class,
    registered_methods,
)
from mtlab.weighting.solvers import cagrad_simplex, min_norm_in_simplex, nash_bargaining, project_to_dual_cone
from test_replicas import (
    CPU,
    FASHION_TASKS,
    PAIR_TASKS,
    assert_same,
    bn_cnn_config,
    build,
    fashion_splits,
    pair_config,
    pair_splits,
    solo_and_group,
)

LOSS_METHODS = [m for m in registered_methods() if issubclass(method_class(m), LossMethod)]


def promising(**wanted) -> list[str]:
    """The gradient methods whose declared properties (class attributes, see GradientMethod) match ``wanted``: each
    method opts into the checks it promises, so a new method is checked the day it registers."""
    return [
        name
        for name in gradient_methods()
        if all(getattr(method_class(name), key) == value for key, value in wanted.items())
    ]


NON_CONFLICTING = [name for name in gradient_methods() if method_class(name).non_conflicting is not None]


def jacobian(tasks: int, kind: str, seed: int = 0, dim: int = 40, dtype=torch.float64) -> torch.Tensor:
    """Random task gradients: 'conflicting' (a pair pointing against each other), 'aligned' (a common direction
    plus noise) or 'scaled' (norms spread over three orders of magnitude)."""
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(tasks, dim, generator=g, dtype=dtype)
    if kind == "conflicting":
        j[1] = -0.8 * j[0] + 0.3 * j[1]
    elif kind == "aligned":
        j = torch.randn(1, dim, generator=g, dtype=dtype) + 0.2 * j
    elif kind == "scaled":
        j = j * torch.logspace(-1.5, 1.5, tasks, dtype=dtype)[:, None]
    return j


CASES = [(t, kind) for t in (2, 3, 5) for kind in ("conflicting", "aligned", "scaled")]


# ---------------------------------------------------------------------------------------------- every method


def test_registry_has_every_method_of_the_issue():
    expected = {
        "fixed", "uncertainty", "dwa", "rlw", "famo", "gls", "gradnorm",
        "mean", "pcgrad", "mgda", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "upgrad", "dualproj", "graddrop",
        "gradvac", "fairgrad", "sdmgrad", "moco", "modo", "config", "excess_mtl", "db_mtl", "imtl",
        "stch", "imtl_l", "auto_lambda", "scale_invariant",
    }  # fmt: skip
    assert set(registered_methods()) == expected
    for name in registered_methods():
        cls = method_class(name)
        assert cls.paper  # every method names its source
        module_doc = __import__(cls.__module__, fromlist=["_"]).__doc__
        assert f"``{name}``" in module_doc  # and its module's docstring states what the code implements
        assert cls.Options.model_fields["method"].default == name


@pytest.mark.parametrize("name", gradient_methods())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_aggregate_keeps_shape_and_dtype_and_is_finite(name, dtype):
    j = jacobian(3, "conflicting").to(dtype)
    update = aggregate(name, j, generator=torch.Generator().manual_seed(0))
    assert update.shape == (40,)
    assert update.dtype == dtype
    assert torch.isfinite(update.float()).all()


@pytest.mark.parametrize("name", gradient_methods())
def test_aggregate_of_zero_gradients_is_finite(name):
    update = aggregate(name, torch.zeros(3, 10))
    assert torch.isfinite(update).all()
    assert update.abs().max() < 1e-6


@pytest.mark.parametrize("name", promising(task_order="any") + promising(task_order="two_tasks"))
@pytest.mark.parametrize(("tasks", "kind"), [(2, "conflicting"), (3, "scaled"), (4, "aligned")])
def test_aggregate_is_invariant_to_the_order_of_tasks(name, tasks, kind):
    if method_class(name).task_order == "two_tasks" and tasks > 2:
        pytest.skip("visits the other tasks in a random order for T > 2")
    j = jacobian(tasks, kind)
    perm = torch.randperm(tasks, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(aggregate(name, j[perm]), aggregate(name, j), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", promising(linear_under_scaling=True))
@pytest.mark.parametrize("scale", [0.01, 7.0])
def test_aggregate_is_linear_under_scaling(name, scale):
    j = jacobian(3, "conflicting")
    seed = torch.Generator().manual_seed
    assert torch.allclose(
        aggregate(name, scale * j, generator=seed(0)), scale * aggregate(name, j, generator=seed(0)), rtol=1e-5
    )


@pytest.mark.parametrize("name", NON_CONFLICTING)
@pytest.mark.parametrize(("tasks", "kind"), CASES)
def test_update_conflicts_with_no_task(name, tasks, kind):
    j = jacobian(tasks, kind, seed=tasks)
    update = aggregate(name, j, **method_class(name).non_conflicting)
    products = j @ update  # d . g_t
    # UPGrad and DualProj project on the regularised Gramian G' = G / tr G + 1e-4 I (TorchJD's too): (G' v)_t >= 0
    # leaves d . g_t >= -1e-4 tr(G) v_t, a conflict within that margin.
    tolerance = 2e-4 * j.pow(2).sum() + 1e-9
    assert (products >= -tolerance).all(), products


@pytest.mark.parametrize("name", gradient_methods())
def test_methods_equal_the_mean_when_tasks_agree_exactly_where_they_say_so(name):
    # Identical task gradients: nothing conflicts, so projection methods return the mean gradient.
    g = torch.randn(1, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    update = aggregate(name, g.expand(3, -1).clone(), generator=torch.Generator().manual_seed(0))
    agree = method_class(name).when_gradients_agree
    if agree in ("mean", "sum"):
        scale = 3.0 if agree == "sum" else 1.0  # PCGrad and GradVac sum the (unchanged) gradients
        assert torch.allclose(update, scale * g[0], rtol=1e-3)
    else:  # every method still points along g
        assert torch.nn.functional.cosine_similarity(update, g[0], dim=0) > 0.999 or update.norm() < 1e-9


# ------------------------------------------------------------------------------------------ golden values


def test_pcgrad_two_tasks_by_hand():
    # g1 . g2 = -1 < 0: g1' = g1 - (-1 / |g2|^2) g2 = (0.5, 0.5); g2' = g2 - (-1 / |g1|^2) g1 = (0, 1).
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    assert torch.allclose(aggregate("pcgrad", j), torch.tensor([0.5, 1.5]))
    # No conflict: the plain sum.
    assert torch.allclose(aggregate("pcgrad", torch.tensor([[1.0, 0.0], [1.0, 1.0]])), torch.tensor([2.0, 1.0]))


def test_imtl_g_by_hand():
    # g1 = (1, 0), g2 = (0, 2): u1 = (1, 0), u2 = (0, 1), D = g1 - g2 = (1, -2), U = u1 - u2 = (1, -1);
    # alpha_2 = g1 . U / (D . U) = 1 / 3, alpha_1 = 2 / 3, d = (2/3, 2/3): equal projections on u1 and u2.
    j = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    d = aggregate("imtl_g", j)
    assert torch.allclose(d, torch.tensor([2 / 3, 2 / 3]))


def test_mgda_two_tasks_by_hand():
    # min over gamma of |gamma g1 + (1 - gamma) g2|^2 with g1 = (1, 0), g2 = (0, 3): gamma = 9 / 10.
    j = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert torch.allclose(aggregate("mgda", j), torch.tensor([0.9, 0.3]))
    # One gradient inside the other's half-space beyond it: the smaller one is the min-norm point.
    assert torch.allclose(aggregate("mgda", torch.tensor([[1.0, 0.0], [2.0, 1.0]])), torch.tensor([1.0, 0.0]))


def test_exact_solvers_satisfy_their_optimality_conditions():
    g = jacobian(4, "conflicting", seed=5)
    gram = (g @ g.T)[None]
    w = min_norm_in_simplex(gram)[0]
    gw = gram[0] @ w
    # KKT of min w^T G w on the simplex: (G w)_t >= w^T G w everywhere, with equality on the support.
    assert (gw >= w @ gw - 1e-7 * gram.abs().max()).all()
    assert (w >= 0).all()
    assert w.sum().item() == pytest.approx(1.0)
    u = torch.eye(4, dtype=torch.float64)[None]
    v = project_to_dual_cone(u, gram + 1e-6 * torch.eye(4, dtype=torch.float64))[0]
    assert (v >= u[0] - 1e-9).all()
    assert (torch.einsum("ts,ms->mt", gram[0], v) >= -1e-6 * gram.abs().max()).all()  # in the dual cone
    alpha, converged = nash_bargaining(gram)
    alpha = alpha[0]
    assert converged.all()
    assert torch.allclose(gram[0] @ alpha * alpha, torch.ones(4, dtype=torch.float64), rtol=1e-3)


def test_cagrad_dual_matches_a_dense_search_on_two_tasks():
    g = jacobian(2, "conflicting", seed=2)
    gram = g @ g.T
    w, _, _ = cagrad_simplex(gram[None], 0.5)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    ws = torch.stack([grid, 1 - grid], 1)
    gram_n = gram / gram.trace()
    a = gram_n.mean(1)
    objective = ws @ a + 0.5 * a.mean().sqrt() * torch.einsum("nt,ts,ns->n", ws, gram_n, ws).sqrt()
    assert w[0, 0].item() == pytest.approx(grid[objective.argmin()].item(), abs=2e-4)


# -------------------------------------------------------------------------------------------------- TorchJD


def torchjd_weighted(weighting):
    """A TorchJD weighting of the matrix J J^T as an aggregator: J -> J^T weighting(J J^T)."""
    return lambda j: weighting(j @ j.T) @ j


NOT_IN_TORCHJD = {"moco", "db_mtl", "imtl"}


def torchjd_aggregator(name: str, tasks: int):
    A = pytest.importorskip("torchjd.aggregation")
    return {
        # FairGrad and SDMGrad: mtlab multiplies by T as the authors do (TorchJD does not), clip off.
        "fairgrad": (lambda j: tasks * A.FairGrad(alpha=2.0)(j), {"alpha": 2.0, "max_norm": 0.0}),
        "config": (A.ConFIG(), {}),
        "modo": (torchjd_weighted(A.MoDoWeighting()), {}),
        "sdmgrad": (lambda j: tasks * torchjd_weighted(A.SDMGradWeighting())(j), {"max_norm": 0.0}),
        "mean": (A.Mean(), {}),
        "upgrad": (A.UPGrad(), {}),
        "dualproj": (A.DualProj(), {}),
        "mgda": (A.MGDA(epsilon=1e-12, max_iters=100000), {}),
        "imtl_g": (A.IMTLG(), {}),
        "aligned_mtl": (A.AlignedMTL(), {}),
        "cagrad": (A.CAGrad(c=0.5), {"c": 0.5, "rescale": False}),
        "nash_mtl": (A.NashMTL(n_tasks=tasks, optim_niter=100), {}),
        "pcgrad": (A.PCGrad(), {}),
        "gradvac": (A.GradVac(beta=0.01), {"beta": 0.01}),
        "graddrop": (A.GradDrop(), {}),
    }[name]


# Iterative solvers there: Frank-Wolfe (MGDA), cvxpy (CAGrad, Nash-MTL), scipy's least_squares (FairGrad).
TOLERANCE = {"mgda": 1e-4, "cagrad": 1e-3, "nash_mtl": 1e-2, "fairgrad": 1e-5}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", sorted(set(gradient_methods())))
@pytest.mark.parametrize(("tasks", "kind"), CASES)
def test_agrees_with_torchjd(name, tasks, kind):
    if name in NOT_IN_TORCHJD:
        pytest.skip(f"TorchJD 0.18 has no {name}; checked by hand below")
    if name == "excess_mtl":
        pytest.skip("one step: mtlab keeps the authors' uniform first step, TorchJD does not (tested below)")
    if name in ("pcgrad", "gradvac") and tasks > 2:
        pytest.skip("random task orders for T > 2 are drawn differently (checked against the two-task form)")
    if name == "nash_mtl" and kind == "scaled":
        pytest.skip("TorchJD's cvxpy iterations stop short of the Nash solution on badly scaled gradients (residual "
                    "|alpha * G alpha - 1| of 2-40, mtlab's below 1e-6); the Nash conditions are tested directly")
    reference, options = torchjd_aggregator(name, tasks)
    j = jacobian(tasks, kind, seed=10 * tasks)
    torch.manual_seed(0)  # GradDrop: both draw their uniforms from torch's global generator
    expected = reference(j)
    torch.manual_seed(0)
    mine = aggregate(name, j, **options)
    error = ((mine - expected).norm() / expected.norm().clamp(min=1e-12)).item()
    assert error < TOLERANCE.get(name, 1e-6), error


def stateful_torchjd(name: str):
    """TorchJD's stateful weighting for ``name`` and mtlab's options matching it."""
    A = pytest.importorskip("torchjd.aggregation")
    return {
        "excess_mtl_warmup": (A.ExcessMTLWeighting(n_warmup_steps=2), {"warmup_steps": 2, "step_size": 1.0}),
        "modo": (A.MoDoWeighting(gamma=0.05, rho=0.2), {"gamma": 0.05, "rho": 0.2}),
        "sdmgrad": (A.SDMGradWeighting(lr=5.0, lambda_=0.4), {"lr": 5.0, "lam": 0.4, "max_norm": 0.0}),
    }[name]


@pytest.mark.parametrize("case", ["excess_mtl_warmup", "modo", "sdmgrad"])
@pytest.mark.parametrize("tasks", [2, 4])
def test_stateful_methods_agree_with_torchjd_over_several_steps(case, tasks):
    """Six steps on the same random draws; MoDo and SDMGrad get the cross matrix J_1 J_2^T of two independent
    Jacobians, as the loop gives them (TorchJD's input for both)."""
    name = case.removesuffix("_warmup")
    reference, options = stateful_torchjd(case)
    method = create_method({"method": name, **options}, [f"t{i}" for i in range(tasks)])
    g = torch.Generator().manual_seed(tasks)
    for step in range(6):
        j1, j2 = (torch.randn(tasks, 30, generator=g, dtype=torch.float64) * (1 + step) for _ in range(2))
        j = (j1 + j2) / 2
        if name == "excess_mtl":  # a matrix weighting of the Jacobian itself
            expected = reference(j)
            _, mine = method.aggregate(j[None], (j @ j.T)[None])
        else:
            expected = reference(j1 @ j2.T) * (tasks if name == "sdmgrad" else 1)  # the authors' x T
            _, mine = method.aggregate(j[None], (j1 @ j2.T)[None])
        assert torch.allclose(mine[0], expected, rtol=1e-9, atol=1e-12), (step, mine[0], expected)


@pytest.mark.parametrize("tasks", [2, 4])
def test_excess_mtl_keeps_the_first_step_uniform_as_the_authors_and_otherwise_agrees_with_torchjd(tasks):
    """The authors' code records the first step's excess risks E_1 as the baseline and keeps the weights uniform;
    TorchJD 0.18 also takes a step exp(eta E_1) with the raw E_1 there (the documented difference). From then on
    both take the same steps, so mtlab's weights are TorchJD's with that first factor divided out."""
    A = pytest.importorskip("torchjd.aggregation")
    eta = 0.7
    reference = A.ExcessMTLWeighting(robust_step_size=eta)
    method = create_method({"method": "excess_mtl", "step_size": eta}, [f"t{i}" for i in range(tasks)])
    g = torch.Generator().manual_seed(tasks)
    first = None
    for step in range(6):
        j = torch.randn(tasks, 30, generator=g, dtype=torch.float64) * (1 + step)
        expected = reference(j)
        update, mine = method.aggregate(j[None], (j @ j.T)[None])
        if step == 0:
            first = (j**2 / (j**2 + 1e-7).sqrt()).sum(-1)  # the raw E_1: the baseline
            uniform = torch.full((tasks,), 1.0 / tasks, dtype=torch.float64)
            assert torch.equal(mine[0], uniform)
            assert torch.allclose(update[0], j.mean(0))
            assert torch.allclose(expected, torch.softmax(eta * first, 0), rtol=1e-9)  # TorchJD's step at call 1
            assert not torch.allclose(expected, uniform, atol=1e-3)
        else:
            divided = expected * torch.exp(-eta * first)
            assert torch.allclose(mine[0], divided / divided.sum(), rtol=1e-9, atol=1e-12), (step, mine[0])


def test_excess_mtl_first_step_does_not_fix_the_weights_on_large_gradients():
    """The defect: with E_1 unscaled, one step on gradients of many parameters took the weights far from uniform
    (3 tasks on an MLP: [.49 .05 .47]). Now step 1 is uniform and the later steps are of order eta."""
    j = torch.randn(3, 100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    j[1] *= 0.3
    method = create_method({"method": "excess_mtl"}, ["a", "b", "c"])
    for _ in range(3):
        _, weights = method.aggregate(j[None], (j @ j.T)[None])
    assert (weights - 1 / 3).abs().max() < 0.02, weights


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 3.0])
def test_fairgrad_solves_its_fairness_condition(alpha):
    """G w = w^(-1/alpha) (alpha > 0; every task improves at rate g_t . d = w_t^(-1/alpha)), and TorchJD's weights."""
    A = pytest.importorskip("torchjd.aggregation")
    j = spread_jacobian(5, 1e3, seed=1)
    d = aggregate("fairgrad", j, alpha=alpha, max_norm=0.0)
    expected = 5 * A.FairGrad(alpha=alpha)(j)  # the authors' x T
    assert relative_error(d, expected) < 1e-5
    if alpha > 0:
        w = torch.linalg.lstsq(j.T, d[:, None]).solution[:, 0] / 5  # the solver's w (d = 5 J^T w)
        assert torch.allclose(j @ d / 5, w.pow(-1 / alpha), rtol=1e-6)
    # The authors' clipping: the update is no longer than max_norm.
    assert aggregate("fairgrad", 100 * j, alpha=alpha).norm() <= 1.0 + 1e-9


def test_fairgrad_multiplies_by_the_task_count_before_clipping_as_the_authors():
    """OptMN-Lab/fairgrad: d = T J^T w, then clip_grad_norm_(max_norm = 1). At alpha = 2 on gradients with
    1/T < |J^T w| < 1 the clip engages only with the factor T (it did not before)."""
    from mtlab.weighting.solvers import fair_allocation

    def bare(j):  # J^T w, w the solver's fairness weights
        return fair_allocation((j @ j.T)[None], 2.0)[0][0] @ j

    j = jacobian(3, "conflicting", seed=2)
    j = j * (0.5 / bare(j).norm()) ** -3  # J^T w scales as |g|^((1 - alpha) / (1 + alpha)) = |g|^(-1/3)
    assert bare(j).norm().item() == pytest.approx(0.5, rel=1e-6)
    assert torch.allclose(aggregate("fairgrad", j, alpha=2.0, max_norm=0.0), 3 * bare(j), rtol=1e-9)
    clipped = aggregate("fairgrad", j, alpha=2.0)
    assert clipped.norm().item() == pytest.approx(1.0, rel=1e-9)  # |3 J^T w| = 1.5, clipped to 1
    assert torch.allclose(clipped, bare(j) / bare(j).norm(), rtol=1e-6)


def test_fairgrad_reports_a_solve_that_stopped_short():
    j = spread_jacobian(6, 1e4, seed=3)
    method = create_method({"method": "fairgrad", "alpha": 2.0, "newton_steps": 1}, [f"t{i}" for i in range(6)])
    gram = (j @ j.T)[None]
    with pytest.warns(RuntimeWarning, match="fairgrad: .*loss.newton_steps"):
        method.aggregate(j[None], gram)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        method.aggregate(j[None], gram)
    assert method.unconverged.tolist() == [2]
    assert "unconverged" in method.replica_state(0)


def test_sdmgrad_multiplies_by_the_task_count_and_clips_to_1_as_the_authors():
    """OptMN-Lab/sdmgrad: g = T (J^T w + lambda g0) / (1 + lambda), then clip_grad_norm_(max_norm = 1)."""
    g = torch.Generator().manual_seed(5)
    j1, j2 = (torch.randn(3, 50, generator=g, dtype=torch.float64) for _ in range(2))
    j = (j1 + j2) / 2
    free = create_method({"method": "sdmgrad", "max_norm": 0.0}, ["a", "b", "c"])
    update, weights = free.aggregate(j[None], (j1 @ j2.T)[None])
    assert weights.sum().item() == pytest.approx(3.0)  # (w + lambda / T) / (1 + lambda) sums to 1, times T
    assert update[0].norm() > 1
    clipped = create_method({"method": "sdmgrad"}, ["a", "b", "c"])
    short, short_weights = clipped.aggregate(j[None], (j1 @ j2.T)[None])
    assert short[0].norm().item() == pytest.approx(1.0)
    assert torch.allclose(short[0], update[0] / update[0].norm())
    assert torch.allclose(torch.einsum("kt,ktp->kp", short_weights, j[None]), short)  # recorded = applied
    small, _ = clipped.aggregate(1e-3 * j[None], 1e-6 * (j1 @ j2.T)[None])
    assert small[0].norm() < 1  # shorter updates pass unclipped


def test_config_has_equal_cosines_and_the_summed_projections_as_length():
    j = jacobian(4, "scaled", seed=4)
    d = aggregate("config", j)
    cosines = (j @ d) / (j.norm(dim=1) * d.norm())
    assert torch.allclose(cosines, cosines[0].expand(4), rtol=1e-9)
    assert d.norm().item() == pytest.approx((j @ (d / d.norm())).sum().item(), rel=1e-9)


def test_moco_tracks_the_gradients_and_steps_its_weights_by_hand():
    libmtl_steps = {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5}
    method = create_method({"method": "moco", "rho": 0.1, **libmtl_steps}, ["a", "b"])
    g1 = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    g2 = torch.tensor([[[3.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    update, lam = method.aggregate(g1, g1 @ g1.mT)
    y = 0.5 * g1[0]  # y <- y - 0.5 (y - g), y = 0
    step = 0.1 * (y @ y.T + 0.1 * torch.eye(2, dtype=torch.float64)) @ torch.tensor([0.5, 0.5], dtype=torch.float64)
    expected = torch.tensor([0.5, 0.5], dtype=torch.float64) - step  # (0.4825, 0.4275): already sums to 1 - 0.0375
    expected = expected + (1 - expected.sum()) / 2  # its projection on the simplex (both stay positive)
    assert torch.allclose(lam[0], expected)
    assert torch.allclose(update[0], y.T @ expected)
    update, _ = method.aggregate(g2, g2 @ g2.mT)
    beta = 0.5 / 2**0.5
    y = y - beta * (y - g2[0])
    assert torch.allclose(method.tracked[0], y)
    assert torch.allclose(update[0], y.T @ method.lam[0])


def test_moco_defaults_are_the_authors_and_keep_both_tasks_where_rho_0_collapses():
    """Trade-Off-MOL's MoCo: beta = gamma = rho = 0.1, constant steps. Gradients with g_1 . g_2 >= |g_2|^2 make the
    min-norm weights one-hot: with rho = 0 (LibMTL's default, mtlab's before) lambda reaches (0, 1); with the
    authors' rho = 0.1 it settles inside the simplex, at the minimiser of lambda^T (G + rho I) lambda."""
    options = create_method({"method": "moco"}, ["a", "b"]).options
    assert (options.beta, options.beta_sigma, options.gamma, options.gamma_sigma, options.rho) == (0.1, 0, 0.1, 0, 0.1)
    j = torch.tensor([[[0.3, 0.0], [0.1, 0.1]]], dtype=torch.float64)  # g1 . g2 = 0.03 >= |g2|^2 = 0.02
    final = {}
    for rho in (0.0, 0.1):
        method = create_method({"method": "moco", "rho": rho}, ["a", "b"])
        for _ in range(3000):
            _, lam = method.aggregate(j, j @ j.mT)
        final[rho] = lam[0]
    assert final[0.0][0].item() == 0.0  # collapsed onto task b
    # (G + 0.1 I) = [[0.19, 0.03], [0.03, 0.12]]: the minimiser on the simplex is a = 0.09 / 0.25 = 0.36.
    assert final[0.1][0].item() == pytest.approx(0.36, abs=1e-3)


def test_db_mtl_balances_the_moving_averages_of_the_log_loss_gradients_by_hand():
    method = create_method({"method": "db_mtl", "sigma": 0.5}, ["a", "b"])
    losses = torch.tensor([[2.0, 0.5]], requires_grad=True)
    objectives, factor = method.task_objectives(losses)
    assert torch.allclose(objectives, (losses + 1e-8).log())
    assert torch.allclose(factor, 1 / (losses.detach() + 1e-8))
    j1 = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    update, weights = method.aggregate(j1, j1 @ j1.mT)
    average = 0.1 * j1[0]  # beta_1 = 0.9: g^ = 0.9 * 0 + 0.1 g
    assert torch.allclose(update[0], average[0] + 3 * average[1], rtol=1e-6)  # the smaller one scaled to |g^_a|
    assert torch.allclose(weights[0], torch.tensor([0.1, 0.3]), rtol=1e-6)
    j2 = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    update, _ = method.aggregate(j2, j2 @ j2.mT)
    beta = 0.9 / 2**0.5
    average = beta * average + (1 - beta) * j2[0]
    norms = average.norm(dim=1)
    assert torch.allclose(update[0], (norms.max() / norms) @ average, rtol=1e-6)


def test_imtl_scales_the_losses_and_combines_their_gradients_as_imtl_g():
    method = create_method({"method": "imtl"}, ["a", "b"])
    with torch.no_grad():
        method.log_scale.copy_(torch.tensor([[0.0, math.log(2.0)]]))
    losses = torch.tensor([[1.5, 4.0]])
    objectives, factor = method.task_objectives(losses)
    assert torch.allclose(objectives, torch.tensor([[1.5, 8.0 - math.log(2.0)]]))
    assert torch.allclose(factor, torch.tensor([[1.0, 2.0]]))
    objectives.sum().backward()
    assert torch.allclose(method.log_scale.grad, torch.tensor([[0.5, 7.0]]))  # e^s L - 1
    j = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(aggregate("imtl", j), aggregate("imtl_g", j))


def test_imtl_learns_its_loss_scales_in_training():
    from mtlab.train.fit import fit

    raw = pair_config("shallow FC", 0, epochs=1).model_dump(mode="json")
    config = parse_config({**raw, "loss": {"method": "imtl"}})
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    result = fit(build(config, PAIR_TASKS, (2, 14, 14)), pair_splits(0), config, tasks=classes, device=CPU)
    scales = result.weighting_state["log_scale"]
    assert scales.shape == (len(PAIR_TASKS),)
    assert (scales.abs() > 1e-4).all()  # moved from 0 by the gradient e^s L - 1 of each task's backward pass


def test_double_sampling_hands_the_method_two_halves_of_the_batch():
    """The step gives a ``samples = 2`` method the batch's Jacobian and the cross product of its two halves'."""
    from mtlab.train.fit import fit
    from mtlab.weighting.modo import MoDo

    seen = []
    original = MoDo.aggregate

    def spy(self, jacobian, gramian):
        seen.append((jacobian.clone(), gramian.clone()))
        return original(self, jacobian, gramian)

    raw = pair_config("shallow FC", 0, epochs=1).model_dump(mode="json")
    config = parse_config({**raw, "loss": {"method": "modo"}})
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    MoDo.aggregate = spy
    try:
        fit(build(config, PAIR_TASKS, (2, 14, 14)), pair_splits(0), config, tasks=classes, device=CPU)
    finally:
        MoDo.aggregate = original
    jacobian, cross = seen[0]
    assert cross.shape == (1, len(PAIR_TASKS), len(PAIR_TASKS))
    assert not torch.allclose(cross, jacobian @ jacobian.mT, rtol=1e-3)  # not the batch's own Gramian


# ---------------------------------------------------------------------------------------- loss-based methods


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_loss_methods_map_losses_to_one_objective_per_replica(name):
    losses = torch.tensor([[0.5, 2.0, 1.0], [1.5, 0.2, 0.7]], requires_grad=True)
    method = create_method({"method": name}, ["a", "b", "c"], replicas=2)
    if name == "gradnorm":
        pytest.skip("needs a model (tested through training)")
    method.plan(epochs=2, steps_per_epoch=5)  # the run's length, as the loop gives it before the first step
    objective, weights = method(losses)
    assert objective.shape == (2,)
    assert weights.shape == (2, 3)
    assert torch.isfinite(objective).all()
    assert not weights.requires_grad
    objective.sum().backward()
    assert torch.isfinite(losses.grad).all()


def test_scale_invariant_is_the_sum_of_log_losses_and_ignores_each_loss_scale():
    """SI (Navon et al. 2022, Table 2): L = sum_t log L_t, gradient 1 / L_t; loss.weights are the coefficients of the
    log-losses, as the authors' task weights, and a weight of 0 leaves a task out."""
    losses = torch.tensor([[0.5, 2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    objective, weights = create_method({"method": "scale_invariant"}, ["a", "b", "c"])(losses)
    assert objective.item() == pytest.approx(math.log(0.5 * 2.0 * 1.0))
    objective.sum().backward()
    assert torch.allclose(losses.grad, 1 / losses.detach())
    assert torch.allclose(weights, 1 / losses.detach())
    scaled = torch.tensor([[50.0, 0.002, 1.0]], dtype=torch.float64, requires_grad=True)  # 100x, 1/1000x, 1x
    create_method({"method": "scale_invariant"}, ["a", "b", "c"])(scaled)[0].sum().backward()
    assert torch.allclose(scaled.grad * scaled.detach(), torch.ones(1, 3, dtype=torch.float64))  # relative changes
    # weights (2, 1, 0): the method sees (2 L_a, L_b, 0); objective 2 log(2 L_a) + log L_b, task c left out.
    seen = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    objective, weights = create_method({"method": "scale_invariant", "weights": {"a": 2.0, "c": 0.0}},
                                       ["a", "b", "c"])(seen)
    assert objective.item() == pytest.approx(2 * math.log(1.0) + math.log(2.0))
    assert weights[0].tolist() == pytest.approx([2.0, 0.5, 0.0])


def test_fixed_gls_and_uncertainty_golden_values():
    losses = torch.tensor([[1.0, 4.0]])
    assert create_method({"method": "fixed"}, ["a", "b"])(losses)[0].item() == 5.0
    objective, weights = create_method({"method": "gls"}, ["a", "b"])(losses)
    assert objective.item() == pytest.approx(2.0)  # sqrt(1 * 4)
    assert weights[0].tolist() == pytest.approx([1.0, 0.25])  # L / (T L_t)
    method = create_method({"method": "uncertainty"}, ["a", "b"])
    with torch.no_grad():
        method.log_variance.copy_(torch.tensor([[0.0, math.log(4.0)]]))
    objective, weights = method(losses)
    assert objective.item() == pytest.approx(1.0 + 4.0 / 4 + math.log(4.0) / 2)
    assert weights[0].tolist() == pytest.approx([1.0, 0.25])


def test_dwa_weights_follow_the_rate_of_each_loss():
    method = create_method({"method": "dwa", "temperature": 2.0}, ["a", "b"])
    losses = torch.ones(1, 2)
    assert method(losses)[1].tolist() == [[1.0, 1.0]]
    method.after_epoch(torch.tensor([[1.0, 1.0]]))
    assert method(losses)[1].tolist() == [[1.0, 1.0]]  # one epoch: no rate yet
    method.after_epoch(torch.tensor([[0.5, 1.0]]))  # a fell by half, b did not move
    expected = 2 * torch.softmax(torch.tensor([0.5, 1.0]) / 2, 0)
    assert torch.allclose(method(losses)[1][0], expected)


def test_rlw_draws_from_each_replicas_generator():
    def weights(seed):
        method = create_method({"method": "rlw"}, ["a", "b", "c"], generators=[torch.Generator().manual_seed(seed)])
        return method(torch.ones(1, 3))[1]

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))
    assert weights(1).sum().item() == pytest.approx(1.0)


def test_famo_moves_weight_to_the_task_that_improves_less():
    method = create_method({"method": "famo"}, ["a", "b"])
    before = torch.tensor([[1.0, 1.0]])
    for _ in range(5):
        method.after_step(before, torch.tensor([[0.5, 0.99]]))  # a improved a lot, b hardly
    _, weights = method(before)
    assert weights[0, 1] > weights[0, 0]


def test_stch_agrees_with_torchjd_before_and_after_its_warm_up():
    """Warm-up: the sum of log-losses; then T times TorchJD's STCH of the log-losses with lambda = 1 and the
    reference log N (N the last warm-up epoch's mean losses) - values and gradients, per replica."""
    scalarization = pytest.importorskip("torchjd.scalarization")
    g = torch.Generator().manual_seed(4)
    method = create_method({"method": "stch", "mu": 0.3, "warmup_epochs": 2}, ["a", "b", "c"], replicas=2)
    nadir = (torch.rand(2, 3, generator=g) + 0.5).double()  # float32 values: the buffer holds float32
    for epoch in range(3):
        losses = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 2).requires_grad_()
        objective, weights = method(losses)
        objective.sum().backward()
        for k in range(2):
            log_losses = losses[k].detach().log().requires_grad_()
            if epoch < 2:
                expected = log_losses.sum()
            else:
                oracle = scalarization.STCH(0.3, weights=torch.ones(3, dtype=torch.float64), reference=nadir[k].log())
                expected = 3 * oracle(log_losses)
            expected.backward()
            assert objective[k].item() == pytest.approx(expected.item(), rel=1e-10)
            # d/dL_t = (d/d log L_t) / L_t: the oracle's gradient through the log, and the recorded weight.
            assert torch.allclose(losses.grad[k], log_losses.grad / losses[k].detach(), rtol=1e-9)
            assert torch.allclose(weights[k], losses.grad[k], rtol=1e-9)
        method.after_epoch(nadir if epoch == 1 else torch.full((2, 3), 7.0, dtype=torch.float64))
    assert torch.equal(method.nadir, nadir.float())  # fixed at the last warm-up epoch, never moved after


def test_stch_warm_up_is_a_share_of_the_run_and_ends_in_a_short_one():
    """The defect: a warm-up of 5 epochs never ended in runs of 5 epochs or fewer, so stch was the sum of log-losses.
    Now it is warmup_fraction (0.1) of the run's steps: 5 epochs of 4 steps -> 2 steps, the nadir their mean loss."""
    method = create_method({"method": "stch", "mu": 0.5}, ["a", "b"], replicas=2)
    method.plan(epochs=5, steps_per_epoch=4)
    g = torch.Generator().manual_seed(0)
    seen = []
    for step in range(4):
        losses = torch.rand(2, 2, generator=g, dtype=torch.float64) + 0.5
        objective, _ = method(losses)
        if step < 2:
            assert torch.allclose(objective, losses.log().sum(1))  # warm-up: the sum of log-losses
            seen.append(losses)
        else:
            nadir = torch.stack(seen).mean(0)
            expected = 2 * 0.5 * torch.logsumexp((losses / nadir).log() / 0.5, dim=1)
            assert torch.allclose(objective, expected, rtol=1e-6)
        method.after_step(losses, None)
    assert torch.allclose(method.nadir.double(), torch.stack(seen).mean(0), rtol=1e-6)
    # A long run averages the warm-up's last epoch of steps, as the authors' last warm-up epoch: 100 x 10 steps,
    # warm-up 100 steps, the nadir the mean of steps 91-100.
    long = create_method({"method": "stch"}, ["a", "b"])
    long.plan(epochs=100, steps_per_epoch=10)
    for step in range(100):
        long.after_step(torch.full((1, 2), float(step + 1)), None)
    assert long.nadir.tolist() == [[95.5, 95.5]]
    # Without plan() the share has no length: it says so rather than staying in the warm-up.
    with pytest.raises(RuntimeError, match="plan"):
        create_method({"method": "stch"}, ["a", "b"])(torch.ones(1, 2))


def test_stch_keeps_the_old_warmup_epochs_option_and_every_study_listing_stch_validates():
    from mtlab.study.catalog import builtin_study_paths, find_study
    from mtlab.study.spec import expand

    old = create_method({"method": "stch", "warmup_epochs": 5}, ["a", "b"]).options
    assert old.warmup_epochs == 5
    checked = 0
    for name in builtin_study_paths():
        spec, _ = find_study(name)
        for budget in spec.budgets:
            for run in expand(spec, budget):  # expanding validates every run config (the warm-up check included)
                if run.config.loss.method == "stch":
                    loss = run.config.loss
                    assert loss.warmup_epochs is None or loss.warmup_epochs < run.config.train.epochs, (name, budget)
                    checked += 1
    assert checked > 0


def test_stch_leaves_a_task_of_weight_0_out_and_refuses_other_weights():
    method = create_method({"method": "stch", "warmup_epochs": 1, "weights": {"a": 0.0}}, ["a", "b", "c"])
    method.after_epoch(torch.tensor([[0.0, 2.0, 1.0]]))
    objective, weights = method(torch.tensor([[0.0, 1.0, 1.0]]))
    # T counts the two kept tasks: 2 log(exp(log 0.5) + exp(log 1)) = 2 log 1.5.
    assert objective.item() == pytest.approx(2 * math.log(1.5))
    assert weights[0, 0] == 0.0
    assert torch.isfinite(weights).all()
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="stch is invariant to the scale of each task's loss"):
        create_method({"method": "stch", "weights": {"a": 2.0}}, ["a", "b"])


def test_imtl_l_agrees_with_torchjd_over_several_steps():
    """The same random losses, SGD on the scales for five steps: TorchJD's IMTLL and mtlab's imtl_l keep the same
    scales and objectives (replica k of a stacked method follows its own losses)."""
    scalarization = pytest.importorskip("torchjd.scalarization")
    g = torch.Generator().manual_seed(9)
    mine = create_method({"method": "imtl_l"}, ["a", "b", "c"], replicas=2)
    oracles = [scalarization.IMTLL(3) for _ in range(2)]
    optimisers = [torch.optim.SGD(mine.parameters(), lr=0.2)] + [torch.optim.SGD(o.parameters(), lr=0.2)
                                                                 for o in oracles]
    for _ in range(5):
        losses = torch.rand(2, 3, generator=g) * 3
        for o in optimisers:
            o.zero_grad()
        objective, weights = mine(losses)
        objective.sum().backward()
        for k, oracle in enumerate(oracles):
            expected = oracle(losses[k])
            expected.backward()
            assert objective[k].item() == pytest.approx(expected.item(), rel=1e-6)
            assert torch.allclose(weights[k], oracle.log_scale.exp().detach())
        for o in optimisers:
            o.step()
    for k, oracle in enumerate(oracles):
        assert torch.allclose(mine.log_scale[k], oracle.log_scale, atol=1e-6)
    assert not torch.allclose(mine.log_scale, torch.zeros(2, 3))  # the scales did move


class _LinearReplicas:
    """K = 2 stacked linear regressors theta (K, D); task t's output is x . theta_k + t (a stand-in for a model)."""

    count = 2

    def __init__(self, dim: int = 6):
        self.theta = torch.randn(2, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                                 requires_grad=True)

    def parameters(self):
        return [self.theta]

    def buffer_tensors(self):
        return []

    def __call__(self, x, theta=None):
        theta = self.theta if theta is None else theta
        out = torch.einsum("kbd,kd->kb", x, theta)[..., None]  # (K, B, 1)
        return {"a": out, "b": out + 1.0}


class _SquaredLosses:
    """(K, T) mean squared errors, weighted as TaskLosses does (weights 1)."""

    def raw(self, outputs, y):
        return torch.stack([(outputs[t][..., 0] - y[t]).pow(2).mean(1) for t in ("a", "b")], dim=1)

    def scaled(self, raw):
        return list(raw.unbind(1))


def test_auto_lambda_hypergradient_is_the_derivative_through_the_virtual_step():
    """The finite-difference hypergradient on quadratic losses (where it is exact up to rounding) equals autograd's
    d/dlambda sum_t L^meta_t(theta - alpha (grad sum_t lambda_t L_t + wd theta)), replica by replica."""
    from mtlab.train.lookahead import ModelLookAhead

    g = torch.Generator().manual_seed(1)
    model = _LinearReplicas()

    def batch():
        return torch.randn(2, 8, 6, generator=g, dtype=torch.float64), {
            t: torch.randn(2, 8, generator=g, dtype=torch.float64) for t in ("a", "b")}

    step, meta = batch(), batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=0.01)
    method = create_method({"method": "auto_lambda", "init": 0.3}, ["a", "b"], replicas=2).double()
    probe = ModelLookAhead(model, _SquaredLosses(), optimizer, step, meta)
    before = model.theta.detach().clone()
    mine = method.hypergradient(probe)
    assert torch.equal(model.theta, before)  # the look-ahead put the parameters back

    lam = torch.full((2, 2), 0.3, dtype=torch.float64, requires_grad=True)
    losses = _SquaredLosses()
    train = losses.raw(model(step[0]), step[1])
    (grad,) = torch.autograd.grad((lam * train).sum(), model.theta, create_graph=True)
    moved = model.theta - 0.05 * (grad + 0.01 * model.theta)
    (expected,) = torch.autograd.grad(losses.raw(model(meta[0], moved), meta[1]).sum(), lam)
    assert torch.allclose(mine, expected, rtol=1e-6, atol=1e-12), (mine - expected, method.task_weights)
    assert expected.abs().min() > 1e-6  # a hypergradient worth checking


def test_auto_lambda_looks_ahead_on_training_batches_in_an_order_of_their_own(monkeypatch):
    from mtlab.train.fit import fit
    from mtlab.weighting.auto_lambda import AutoLambda

    seen = []
    original = AutoLambda.look_ahead

    def spy(self, probe):
        seen.append((probe.batches["step"][0].clone(), probe.batches["meta"][0].clone()))
        original(self, probe)

    monkeypatch.setattr(AutoLambda, "look_ahead", spy)
    raw = pair_config("shallow FC", 0, epochs=2).model_dump(mode="json")
    config = parse_config({**raw, "loss": {"method": "auto_lambda"}})
    splits = pair_splits(0)
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    result = fit(build(config, PAIR_TASKS, (2, 14, 14)), splits, config, tasks=classes, device=CPU)
    assert len(seen) == 2 * 7  # every step of both epochs (200 examples, batches of 32)
    train_rows = {tuple(r.flatten().tolist()) for r in splits.train.images}
    held_out = {tuple(r.flatten().tolist()) for r in torch.cat([splits.val.images, splits.test.images])}
    for _, meta_x in seen:
        rows = {tuple(r.flatten().tolist()) for r in meta_x[0]}
        assert rows <= train_rows
        assert not rows & held_out
    assert any(not torch.equal(a, b) for a, b in seen)  # not the step's own batch
    weights = [r["train.leq.weight"] for r in result.history]
    assert weights[-1] != pytest.approx(0.1 * 0.5)  # lambda moved from its start (times loss.weights' 0.5)


# ------------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", registered_methods())
def test_stacked_replicas_equal_solo_runs(name):
    """K = 3 stacked replicas of the shallow FC pair net reproduce three solo runs, for every method."""
    raws = [pair_config("shallow FC", seed, epochs=2).model_dump(mode="json") for seed in (0, 1, 2)]
    # The pair net's loss weights, except for the methods that refuse them (invariant to each loss's scale).
    weights = {} if method_class(name).Options.weights_refused else raws[0]["loss"]["weights"]
    configs = [parse_config({**raw, "loss": {"method": name, "weights": weights}}) for raw in raws]
    solo, group = solo_and_group(configs, PAIR_TASKS, (2, 14, 14), pair_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
        assert all(f"train.{t}.weight" in s.history[-1] for t in PAIR_TASKS)
        for key, value in s.weighting_state.items():
            assert torch.allclose(value, g.weighting_state[key], rtol=1e-4, atol=1e-6), key


def test_stch_after_its_warm_up_on_stacked_replicas_equals_solo_runs():
    """One warm-up epoch, then smooth Tchebycheff against each replica's own nadir."""
    raws = [pair_config("shallow FC", seed, epochs=3).model_dump(mode="json") for seed in (0, 1)]
    configs = [parse_config({**raw, "loss": {"method": "stch", "warmup_epochs": 1}}) for raw in raws]
    solo, group = solo_and_group(configs, PAIR_TASKS, (2, 14, 14), pair_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
        assert torch.allclose(s.weighting_state["nadir"], g.weighting_state["nadir"], rtol=1e-5)
    assert not torch.equal(solo[0].weighting_state["nadir"], torch.ones(3))  # the nadir was taken
    assert not torch.allclose(solo[0].weighting_state["nadir"], solo[1].weighting_state["nadir"])


@pytest.mark.parametrize("name", ["uncertainty", "pcgrad"])
def test_both_step_strategies_work_under_bf16_autocast_with_clipping(name):
    from mtlab.train.fit import fit
    from test_replicas import CPU, build

    raw = pair_config("shallow FC", 0, epochs=1, precision="bf16").model_dump(mode="json")
    config = parse_config({**raw, "loss": {"method": name, "weights": raw["loss"]["weights"]}})
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    with pytest.warns(RuntimeWarning) if not _native_bf16() else _no_warning():
        result = fit(build(config, PAIR_TASKS, (2, 14, 14)), pair_splits(0), config, tasks=classes, device=CPU)
    assert all(math.isfinite(v) for v in result.history[-1].values())


def _native_bf16() -> bool:
    from mtlab.train.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def test_representation_gradients_equal_parameter_gradients_for_the_mean():
    """MGDA-UB's split step: for the mean, balancing the representation's gradients is the plain mean step."""
    from mtlab.train.fit import fit
    results = []
    for gradients in ("parameters", "representation"):
        c = bn_cnn_config(0, epochs=2)
        c = parse_config({**c.model_dump(mode="json"), "loss": {"method": "mean", "gradients": gradients}})
        classes = {t: task.num_classes for t, task in FASHION_TASKS.items()}
        results.append(fit(build(c, FASHION_TASKS, (1, 12, 12)), fashion_splits(0), c, tasks=classes, device=CPU))
    assert_same(*results)


@pytest.mark.parametrize("name", registered_methods())
def test_one_epoch_of_fashion_mtl_on_the_embedded_sample_stays_finite(name, tmp_path):
    from mtlab.study.catalog import find_study
    from mtlab.study.spec import expand

    spec, _ = find_study("fashion-mtl")
    run = next(r for r in expand(spec, "quick") if r.config.task_names == ["item", "group"])
    raw = run.config.model_dump(mode="json")
    raw["loss"] = {"method": name}
    raw["data"]["train_subset"] = 200
    raw["data"]["test_subset"] = 200
    raw["train"]["epochs"] = 1
    from mtlab.train.run import train_run

    outcome = train_run(parse_config(raw), tmp_path / name)
    record = outcome.result.history[-1]
    assert all(math.isfinite(v) for v in record.values())
    from mtlab.train.rundir import load_checkpoint

    saved = load_checkpoint(tmp_path / name / "checkpoint.pt")["weighting"]
    assert saved.keys() == outcome.result.weighting_state.keys()
    if name == "uncertainty":
        assert saved["log_variance"].shape == (2,)  # this replica's row of the (K, T) parameter


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["loss.method=nosuch"], "loss.method: unknown value 'nosuch'"),
        (["loss.method=pcgrad", "loss.c=0.4"], "loss.c: not an option of pcgrad"),
        (["loss.method=cagrad", "loss.c=-1"], "loss.c: Input should be greater than or equal to 0"),
        (["loss.method=pcgrad", "tasks=[item]", "loss.weights={}"], "loss.method: pcgrad balances 2 or more tasks"),
        (["loss.method=mgda", "loss.gradients=sideways"], "loss.gradients: Input should be 'parameters'"),
        (["loss.method=nash_mtl", "loss.weights={item: 2}"],
         "loss.weights: nash_mtl is invariant to the scale of each task's loss .*, so weights have no effect; remove"),
        (["loss.method=imtl_g", "loss.weights={item: 1, group: 0.5}"],
         "loss.weights: imtl_g is invariant to the scale of each task's loss .*, so weights have no effect; remove"),
        (["loss.method=stch", "loss.weights={}", "loss.warmup_epochs=3", "train.epochs=3"],
         "loss.warmup_epochs: a warm-up of 3 epochs covers every epoch of this 3-epoch run, so stch would train on "
         "the sum of log-losses alone"),
    ],
)
def test_bad_loss_sections_name_the_key(override, message):
    from mtlab.config import load_config

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as raised:
        load_config("examples/fashion-mtl-sample.yaml", override)
    assert len(str(raised.value).splitlines()) == 1  # one line, naming the key


def test_scale_invariant_methods_take_a_weight_of_0_to_leave_a_task_out():
    from mtlab.config import load_config

    for name in ("nash_mtl", "imtl_g"):
        config = load_config("examples/fashion-mtl-sample.yaml", [f"loss.method={name}", "loss.weights={item: 0}"])
        assert config.loss.weights == {"item": 0.0}
    # And a task left out that way gets no weight (its gradient row is 0).
    j = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.5, 1.0]])
    for name in ("nash_mtl", "imtl_g"):
        method = create_method({"method": name}, ["a", "b", "c"])
        _, weights = method.aggregate(j[None], (j @ j.T)[None])
        assert weights[0, 0] == 0.0
        assert torch.isfinite(weights).all()


def test_mtlab_weightings_says_what_loss_weights_do_for_each_method():
    from mtlab.cli.weightings_cmd import describe

    effect = {row["method"]: row["weights"] for row in describe()}
    assert effect["fixed"] == effect["mgda"] == "loss multipliers"
    for name in ("nash_mtl", "imtl_g"):
        assert effect[name].startswith(f"refused: {name} is invariant to the scale of each task's loss")
    assert "geometric mean" in effect["gls"]
    assert "rates" in effect["famo"]


def test_gls_weights_are_the_exponents_of_a_weighted_geometric_mean():
    method = create_method({"method": "gls", "weights": {"a": 3.0}}, ["a", "b"])
    scaled = torch.tensor([[3.0, 4.0]])  # the losses as the method sees them: w_t L_t, here L = (1, 4)
    objective, weights = method(scaled)
    assert objective.item() == pytest.approx(3.0**0.75 * 4.0**0.25)
    assert weights[0].tolist() == pytest.approx([0.75 * objective.item() / 3.0, 0.25 * objective.item() / 4.0])
    # Relative to the raw losses, the preference multiplies task a's gradient weight by 3 against b's, as in a
    # weighted sum: d/dL_a : d/dL_b = 3 (L_b / L_a) here, against L_b / L_a without weights.
    raw = torch.tensor([[1.0, 4.0]])
    assert (3 * weights[0, 0] / weights[0, 1]).item() == pytest.approx(3 * raw[0, 1].item() / raw[0, 0].item())
    # A task of weight 0 (its loss arrives as 0) is left out, not a zero objective.
    objective, weights = create_method({"method": "gls", "weights": {"a": 0.0}}, ["a", "b"])(torch.tensor([[0.0, 4.0]]))
    assert objective.item() == pytest.approx(4.0)
    assert weights[0].tolist() == [0.0, 1.0]


def test_famo_weights_set_the_rates_it_balances():
    def weights_after_equal_progress(preference):
        method = create_method({"method": "famo", "weights": preference}, ["a", "b"])
        before = torch.tensor([[1.0, 1.0]])
        for _ in range(5):
            method.after_step(before, 0.9 * before)  # both log-losses fall at the same rate
        return method(before)[1][0]

    plain = weights_after_equal_progress({})
    assert plain[0].item() == pytest.approx(plain[1].item())
    preferred = weights_after_equal_progress({"a": 2.0})  # a should fall twice as fast: it is behind, and gains
    assert preferred[0] > 1.05 * preferred[1]
    # A task of weight 0 is left out of the balance instead of taking a share of c against a loss of 0.
    method = create_method({"method": "famo", "weights": {"a": 0.0}}, ["a", "b"])
    assert method(torch.tensor([[0.0, 2.0]]))[1][0].tolist() == pytest.approx([0.0, 1.0])


def test_cagrad_options_validate():
    from mtlab.config import load_config

    config = load_config("examples/fashion-mtl-sample.yaml", ["loss={method: cagrad, c: 0.4}"])
    assert config.loss.method == "cagrad"
    assert config.loss.c == 0.4
    assert issubclass(method_class(config.loss.method), GradientMethod)


def test_a_study_grid_over_methods_and_a_method_override_expand_to_valid_runs(tmp_path):
    from mtlab.study.catalog import find_study
    from mtlab.study.spec import expand, load_study_spec

    path = tmp_path / "methods.yaml"
    path.write_text(
        "name: methods\nseeds: 2\n"
        "base: {data: {dataset: fashion-mnist-sample}, model: {trunk: {type: mlp, widths: [32]}}}\n"
        "grid:\n  loss: {equal: {method: fixed}, pcgrad: {method: pcgrad}, cagrad: {method: cagrad, c: 0.4}}\n"
        "control: {variant: 'loss=equal'}\n"
    )
    runs = expand(load_study_spec(path))
    assert sorted({r.config.loss.method for r in runs}) == ["cagrad", "fixed", "pcgrad"]
    assert {r.config.loss.c for r in runs if r.config.loss.method == "cagrad"} == {0.4}
    spec, _ = find_study("fashion-mtl")
    runs = expand(spec, "quick", {"loss.method": "uncertainty"})
    assert {r.config.loss.method for r in runs} == {"uncertainty"}


@pytest.mark.parametrize("name", ["mgda", "aligned_mtl"])  # MGDA-UB and Aligned-MTL-UB
def test_representation_gradients_on_stacked_replicas_equal_solo_runs(name):
    configs = []
    for seed in (5, 6):
        raw = bn_cnn_config(seed, epochs=2).model_dump(mode="json")
        configs.append(parse_config({**raw, "loss": {"method": name, "gradients": "representation"}}))
    solo, group = solo_and_group(configs, FASHION_TASKS, (1, 12, 12), fashion_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)


def test_representation_gradients_need_a_shared_trunk():
    from mtlab.errors import MtlabError
    from mtlab.train.fit import fit

    raw = bn_cnn_config(0, epochs=1).model_dump(mode="json")
    raw["model"]["sharing"] = "independent"
    classes = {t: task.num_classes for t, task in FASHION_TASKS.items()}
    for loss, message in [
        ({"method": "mgda", "gradients": "representation"}, "needs a model whose heads all read one shared trunk"),
        ({"method": "aligned_mtl", "gradients": "representation"}, "needs a model whose heads all read one shared"),
        ({"method": "pcgrad"}, "no parameters that two tasks share"),
        ({"method": "gradnorm"}, "no shared parameters"),
    ]:
        config = parse_config({**raw, "loss": loss})
        with pytest.raises(MtlabError, match=message):
            fit(build(config, FASHION_TASKS, (1, 12, 12)), fashion_splits(0), config, tasks=classes, device=CPU)


# ------------------------------------------------------------- solvers at every scale and number of tasks (issue 22)
# Oracles: quadprog (an exact active-set QP solver) and cvxpy with Clarabel, used only here. The minimum-norm and
# CAGrad problems are given to them in the variables u_t = |g_t| w_t, whose Gramian is the gradients' correlation
# matrix: in w itself, norms spread over 1e6 make a Gramian of condition 1e12 that the interior-point solver cannot
# finish on.


def spread_jacobian(tasks: int, spread: float, seed: int, dim: int = 60, rank: int | None = None) -> torch.Tensor:
    """Random task gradients whose norms are spread log-evenly over ``spread`` (rank ``rank`` when given)."""
    g = torch.Generator().manual_seed(seed)
    if rank is None:
        j = torch.randn(tasks, dim, generator=g, dtype=torch.float64)
    else:
        j = torch.randn(tasks, rank, generator=g, dtype=torch.float64) @ torch.randn(
            rank, dim, generator=g, dtype=torch.float64
        )
    j = j / j.norm(dim=1, keepdim=True)
    return j * torch.logspace(0, math.log10(spread), tasks, dtype=torch.float64)[:, None]


def oracle_min_norm(j: torch.Tensor) -> torch.Tensor:
    """The minimum-norm point of the convex hull of the rows of ``j`` (full row rank), by quadprog."""
    quadprog = pytest.importorskip("quadprog")
    import numpy as np

    jn = j.numpy()
    norms = np.linalg.norm(jn, axis=1)
    unit = jn / norms[:, None]
    t = len(norms)
    constraints = np.concatenate([(1 / norms)[:, None], np.eye(t)], 1)  # sum_t u_t / |g_t| = 1, u >= 0
    u = quadprog.solve_qp(unit @ unit.T, np.zeros(t), constraints, np.concatenate([[1.0], np.zeros(t)]), meq=1)[0]
    return torch.from_numpy(jn.T @ (u / norms))


def oracle_cagrad(j: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad's update before rescaling, ``g_0 + c |g_0| g_w / |g_w|``, from its dual solved by cvxpy."""
    cp = pytest.importorskip("cvxpy")
    import numpy as np

    jn = j.numpy()
    norms = np.linalg.norm(jn, axis=1)
    unit = jn / norms[:, None]
    g0 = jn.mean(0)
    u = cp.Variable(len(norms))
    objective = (unit @ g0) @ u + c * np.linalg.norm(g0) * cp.norm(unit.T @ u)
    cp.Problem(cp.Minimize(objective), [u >= 0, (1 / norms) @ u == 1]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
    )
    gw = unit.T @ u.value
    return torch.from_numpy(g0 + c * np.linalg.norm(g0) * gw / np.linalg.norm(gw))


def oracle_dual_cone(j: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``J^T v`` summed over the rows of u (M, T), ``v = argmin_{v >= u} v^T G' v`` on the regularised Gramian
    ``G' = G / tr(G) + 1e-4 I`` of UPGrad and DualProj, by quadprog."""
    quadprog = pytest.importorskip("quadprog")
    import numpy as np

    gram = (j @ j.T).numpy()
    gram = gram / np.trace(gram) + 1e-4 * np.eye(len(gram))
    v = [quadprog.solve_qp(gram, np.zeros(len(gram)), np.eye(len(gram)), row)[0] for row in u.numpy()]
    return torch.from_numpy(j.numpy().T @ np.sum(v, axis=0))


def relative_error(mine: torch.Tensor, expected: torch.Tensor) -> float:
    return ((mine - expected).norm() / expected.norm()).item()


def assert_cagrad_optimal(j: torch.Tensor, c: float) -> None:
    """The dual's optimality conditions, to 1e-9 relative, for mtlab's w (the interior-point oracle finishes near
    1e-6 only, so the update is compared with it at 1e-5, and optimality is checked here): the gradient
    ``a + r G w / |g_w|`` is one value nu on the support and no less off it."""
    gram = j @ j.T
    gram = gram / gram.trace()
    w, g0, gw = cagrad_simplex(gram[None], c)
    w, gw = w[0], gw[0]
    gradient = gram.mean(1) + c * g0[0] * gram @ w / gw
    nu = gradient @ w
    scale = gradient.abs().max()
    assert (w >= 0).all()
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert ((gradient - nu).abs()[w > 0] <= 1e-9 * scale).all()
    assert (gradient - nu >= -1e-9 * scale).all()


@pytest.mark.parametrize("spread", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("tasks", [3, 5, 8])
def test_mgda_finds_the_minimum_norm_at_any_spread_of_gradient_norms(tasks, spread):
    j = spread_jacobian(tasks, spread, seed=tasks)
    assert relative_error(aggregate("mgda", j), oracle_min_norm(j)) < 1e-6


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("spread", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("tasks", [3, 5, 8])
def test_cagrad_solves_its_dual_at_any_spread_of_gradient_norms(tasks, spread):
    j = spread_jacobian(tasks, spread, seed=tasks)
    assert relative_error(aggregate("cagrad", j, c=0.5, rescale=False), oracle_cagrad(j, 0.5)) < 1e-5
    assert_cagrad_optimal(j, 0.5)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("tasks", [11, 16, 32])
@pytest.mark.parametrize("name", ["upgrad", "dualproj", "mgda", "cagrad"])
def test_many_tasks_are_solved_to_the_optimum(name, tasks):
    for seed, spread in [(0, 1.0), (1, 1e2), (2, 1e4)]:
        j = spread_jacobian(tasks, spread, seed=100 * tasks + seed, dim=2 * tasks)
        if tasks == 16 and seed == 0:
            j[1] = -0.8 * j[0] + 0.3 * j[1]  # a strongly conflicting pair
        if name == "mgda":
            expected = oracle_min_norm(j)
        elif name == "cagrad":
            expected = oracle_cagrad(j, 0.5)
        elif name == "upgrad":
            expected = oracle_dual_cone(j, torch.eye(tasks, dtype=torch.float64) / tasks)
        else:
            expected = oracle_dual_cone(j, torch.full((1, tasks), 1.0 / tasks, dtype=torch.float64))
        options = {"c": 0.5, "rescale": False} if name == "cagrad" else {}
        error = relative_error(aggregate(name, j, **options), expected)
        assert error < (1e-5 if name == "cagrad" else 1e-6), (seed, spread, error)
        if name == "cagrad":
            assert_cagrad_optimal(j, 0.5)


@pytest.mark.parametrize("tasks", [6, 8, 10, 16])
def test_nash_mtl_reaches_the_bargaining_solution_on_ill_conditioned_gradients(tasks):
    g = torch.Generator().manual_seed(tasks)
    j = torch.randn(tasks, 300, generator=g, dtype=torch.float64) * torch.logspace(-2, 2, tasks, dtype=torch.float64)[
        :, None
    ]
    d = aggregate("nash_mtl", j, max_norm=0.0)
    alpha = torch.linalg.lstsq(j.T, d[:, None]).solution[:, 0]
    # The Nash conditions: every task's share alpha_t g_t . d is 1.
    assert torch.allclose(alpha * (j @ d), torch.ones(tasks, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("tasks", [6, 10, 16])
def test_nash_mtl_converges_on_rank_deficient_gradients(tasks):
    g = torch.Generator().manual_seed(tasks)
    j = torch.randn(tasks, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 300, generator=g, dtype=torch.float64)
    j = j * torch.logspace(-2, 2, tasks, dtype=torch.float64)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged solve warns of nothing
        d = aggregate("nash_mtl", j, max_norm=0.0)
    long = aggregate("nash_mtl", j, max_norm=0.0, newton_steps=5000)
    assert relative_error(d, long) < 1e-6


def test_nash_mtl_reports_a_solve_that_stopped_short():
    j = spread_jacobian(8, 1e4, seed=3)
    method = create_method({"method": "nash_mtl", "newton_steps": 2}, [f"t{i}" for i in range(8)])
    gram = (j @ j.T)[None]
    with pytest.warns(RuntimeWarning, match="nash_mtl: .*newton_steps"):
        method.aggregate(j[None], gram)
    method.aggregate(j[None], gram)  # warns once; counts every time
    assert method.unconverged.tolist() == [2]
    assert "unconverged" in method.replica_state(0)


@pytest.mark.parametrize("scale", [1e-4, 1e-3, 1e-2, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("name", NON_CONFLICTING)
def test_update_conflicts_with_no_task_at_any_gradient_scale(name, scale):
    for j in (torch.tensor([[1.0, 0.0], [-2.0, 1.0]], dtype=torch.float64), jacobian(3, "conflicting", seed=3)):
        j = scale * j
        products = j @ aggregate(name, j, **method_class(name).non_conflicting)
        assert (products >= -2e-4 * j.pow(2).sum()).all(), products


@pytest.mark.parametrize("tasks", [5, 16])
def test_solvers_give_each_stacked_replica_its_own_solution(tasks):
    """K problems of different difficulty in one batch (the active set stops per replica): as solved alone."""
    js = [spread_jacobian(tasks, spread, seed=seed, dim=40) for seed, spread in enumerate((1.0, 1e3, 1e6))]
    js[0][1] = -js[0][0]
    grams = torch.stack([j @ j.T for j in js])
    u = torch.eye(tasks, dtype=torch.float64).expand(3, tasks, tasks) / tasks
    solvers = {
        "min_norm": lambda g: min_norm_in_simplex(g),
        "cagrad": lambda g: cagrad_simplex(g, 0.5)[0],
        "dual_cone": lambda g: project_to_dual_cone(u[: len(g)], g / g.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
                                                    + 1e-4 * torch.eye(tasks, dtype=torch.float64)),
        "nash": lambda g: nash_bargaining(g)[0],
    }
    for name, solve in solvers.items():
        stacked = solve(grams)
        for k in range(3):
            assert torch.allclose(stacked[k], solve(grams[k : k + 1])[0], rtol=1e-9, atol=1e-12), (name, k)
