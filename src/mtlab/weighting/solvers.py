"""Small batched solvers for the T x T problems of gradient methods, for K replicas at once, without a QP package.

Each problem lives on the Gramian G (K, T, T) of T task gradients, with T small (2-10 in practice). Rather than a
Python loop of solver calls per replica and step (TorchJD and LibMTL call quadprog, cvxpy or SLSQP per step), the
constrained problems here are solved *exactly* by enumerating supports: the optimum of a convex problem over a
polyhedron lies in the relative interior of one face, where the active constraints hold with equality and the
stationarity conditions are linear (or, for CAGrad, solvable in closed form). Each of the 2^T faces gives one
candidate from one batched linear solve; the feasible candidate of least objective is the optimum (every feasible
candidate is a feasible point, and the optimum's own face yields the optimum). For T > ``MAX_ENUMERATED_TASKS`` an
iterative fallback is used instead. All arithmetic is in float64; callers cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_ENUMERATED_TASKS = 10
"""Up to this many tasks the 2^T faces are enumerated (1,024 small solves per replica); beyond, iterate."""

_TOL = 1e-9


def faces(tasks: int, device: torch.device, *, empty: bool = True) -> Tensor:
    """(S, T) float64 0/1 masks of every subset of the tasks (1 = in the subset); S = 2^T, or 2^T - 1 without the
    empty set."""
    codes = torch.arange(0 if empty else 1, 2**tasks, device=device)
    return ((codes[:, None] >> torch.arange(tasks, device=device)) & 1).to(torch.float64)


def normalized(gramian: Tensor, eps: float = 1e-4) -> Tensor:
    """G / trace(G) (the Gramian of the Frobenius-normalised Jacobian), or 0 where the trace is below ``eps``:
    the solutions below are invariant to the scale of G, and this keeps their numbers well inside float range."""
    trace = gramian.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    return torch.where(trace < eps, torch.zeros_like(gramian), gramian / trace.clamp(min=eps))


def ridge(gramian: Tensor, eps: float) -> Tensor:
    """G + eps I: positive definite even where the gradients are linearly dependent."""
    eye = torch.eye(gramian.shape[-1], dtype=gramian.dtype, device=gramian.device)
    return gramian + eps * eye


def project_to_dual_cone(u: Tensor, gramian: Tensor) -> Tensor:
    """Weights of the projection of J^T u onto the dual cone of J's rows, for K replicas and M vectors each.

    Solves ``min_v v^T G v  s.t.  v >= u`` (Quinton & Rey, 2024, Proposition 1): u (K, M, T), G (K, T, T) positive
    definite -> v (K, M, T). On the face where the coordinates F are free and the others sit at their bound,
    stationarity is ``(G v)_F = 0``: the system ``[diag(f) G + diag(1 - f)] v = (1 - f) * u``.
    """
    u, g = u.double(), gramian.double()
    k, m, t = u.shape
    if t > MAX_ENUMERATED_TASKS:
        return _project_iteratively(u, g)
    free = faces(t, u.device)  # (S, T)
    system = free[:, None, :, None] * g[None] + torch.diag_embed(1 - free)[:, None]  # (S, K, T, T)
    rhs = (1 - free)[:, None, None, :] * u[None]  # (S, K, M, T)
    v = torch.linalg.solve(system[:, :, None], rhs[..., None])[..., 0]  # (S, K, M, T)
    feasible = (v >= u[None] - _TOL).all(-1)  # (S, K, M)
    objective = torch.einsum("nkmt,kts,nkms->nkm", v, g, v).masked_fill(~feasible, torch.inf)
    best = objective.argmin(0)  # (K, M); the all-bound face (v = u) is always feasible
    return v.gather(0, best[None, ..., None].expand(1, k, m, t))[0]


def _project_iteratively(u: Tensor, g: Tensor, steps: int = 2000) -> Tensor:
    """Projected gradient descent with Nesterov momentum, step 1 / lambda_max(G), from v = u."""
    lipschitz = torch.linalg.eigvalsh(g)[..., -1][:, None, None].clamp(min=1e-12)  # (K, 1, 1)
    v = y = u.clone()
    for i in range(steps):
        step = torch.einsum("kts,kms->kmt", g, y) / lipschitz
        v_next = torch.maximum(u, y - step)
        y = v_next + (i / (i + 3)) * (v_next - v)
        v = v_next
    return v


def min_norm_in_simplex(gramian: Tensor) -> Tensor:
    """``argmin_{w in simplex} w^T G w`` (Sener & Koltun, 2018): G (K, T, T) -> w (K, T), float64.

    Two tasks: the closed form ``w_1 = clamp((g_2 - g_1) . g_2 / |g_1 - g_2|^2, 0, 1)``. More: on the face with
    support F, stationarity ``(G w)_F = lambda 1, w_F^T 1 = 1`` is one linear system in (w, lambda).
    """
    g = ridge(normalized(gramian.double(), 1e-30), 1e-10)
    k, t, _ = g.shape
    if t == 1:
        return torch.ones(k, 1, dtype=torch.float64, device=g.device)
    if t == 2:
        diff = g[:, 0, 0] + g[:, 1, 1] - 2 * g[:, 0, 1]  # |g1 - g2|^2
        w1 = ((g[:, 1, 1] - g[:, 0, 1]) / diff.clamp(min=1e-30)).clamp(0.0, 1.0)
        return torch.stack([w1, 1 - w1], dim=1)
    if t > MAX_ENUMERATED_TASKS:
        return _min_norm_frank_wolfe(g)
    support = faces(t, g.device, empty=False)  # (S, T)
    s = support.shape[0]
    system = torch.zeros(s, k, t + 1, t + 1, dtype=torch.float64, device=g.device)
    system[..., :t, :t] = support[:, None, :, None] * g[None] + torch.diag_embed(1 - support)[:, None]
    system[..., :t, t] = -support[:, None, :]  # - lambda in the free rows
    system[..., t, :t] = 1.0  # weights sum to one
    rhs = torch.zeros(s, k, t + 1, dtype=torch.float64, device=g.device)
    rhs[..., t] = 1.0
    w = torch.linalg.solve(system, rhs)[..., :t]  # (S, K, T)
    feasible = (w >= -_TOL).all(-1)
    objective = torch.einsum("nkt,kts,nks->nk", w, g, w).masked_fill(~feasible, torch.inf)
    best = objective.argmin(0)  # (K,); every vertex is feasible
    w = w.gather(0, best[None, :, None].expand(1, k, t))[0].clamp(min=0.0)
    return w / w.sum(-1, keepdim=True)


def _min_norm_frank_wolfe(g: Tensor, steps: int = 500) -> Tensor:
    """Frank-Wolfe with exact line search (Jaggi, 2013), as Sener & Koltun solve the many-task case."""
    k, t, _ = g.shape
    w = torch.full((k, t), 1.0 / t, dtype=g.dtype, device=g.device)
    for _ in range(steps):
        gw = torch.einsum("kts,ks->kt", g, w)
        vertex = torch.nn.functional.one_hot(gw.argmin(-1), t).to(g.dtype)
        a = (w * gw).sum(-1)  # w^T G w
        b = (vertex * gw).sum(-1)  # e^T G w
        c = torch.einsum("kt,kts,ks->k", vertex, g, vertex)  # e^T G e
        gamma = ((a - b) / (a + c - 2 * b).clamp(min=1e-30)).clamp(0.0, 1.0)
        w = w + gamma[:, None] * (vertex - w)
    return w


def cagrad_simplex(gramian: Tensor, c: float) -> tuple[Tensor, Tensor, Tensor]:
    """CAGrad's dual (Liu et al., 2021, Eq. 4): ``min_{w in simplex} w^T G 1/T + c |g_0| sqrt(w^T G w)``.

    G (K, T, T) -> (w (K, T), |g_0| (K,), |g_w| (K,)), all for the normalised G (the weights the caller builds are
    invariant to G's scale). On the face with support F, with a = G 1/T and r = c |g_0|, stationarity is
    ``a_F + r (G w)_F / |g_w| = mu 1``: with p = G_FF^-1 1, q = G_FF^-1 a_F, P = 1^T p, Q = 1^T q, R = a_F^T q it
    gives ``w_F = (mu p - q) / (mu P - Q)`` with ``mu P - Q = sqrt(Q^2 - P (R - r^2))`` when that is real.
    """
    g = ridge(normalized(gramian.double(), 1e-30), 1e-10)
    k, t, _ = g.shape
    a = g.mean(-1)  # (K, T): G 1/T
    g0 = a.mean(-1).clamp(min=0).sqrt()  # |g_0| = sqrt(1^T G 1) / T
    r = c * g0
    if t > MAX_ENUMERATED_TASKS:
        w = _cagrad_mirror_descent(g, a, r)
    else:
        support = faces(t, g.device, empty=False)  # (S, T)
        block = support[:, None, :, None] * g[None] * support[:, None, None, :] + torch.diag_embed(1 - support)[:, None]
        p = torch.linalg.solve(block, support[:, None, :].expand(-1, k, -1))  # (S, K, T), 0 off the face
        q = torch.linalg.solve(block, support[:, None, :] * a[None])
        big_p, big_q = p.sum(-1), q.sum(-1)
        big_r = (support[:, None, :] * a[None] * q).sum(-1)
        disc = big_q**2 - big_p * (big_r - r[None] ** 2)
        root = disc.clamp(min=0).sqrt()
        mu = (big_q + root) / big_p
        w = (mu[..., None] * p - q) / root.clamp(min=1e-30)[..., None]
        valid = (disc > 1e-18) & (w >= -_TOL).all(-1)
        # The vertices are feasible candidates too (the face formula needs a stationary point inside the face).
        vertices = torch.eye(t, dtype=torch.float64, device=g.device)[:, None].expand(t, k, t)
        w = torch.cat([w.masked_fill(~valid[..., None], 0.0), vertices])
        valid = torch.cat([valid, torch.ones(t, k, dtype=torch.bool, device=g.device)])
        norm = torch.einsum("nkt,kts,nks->nk", w, g, w).clamp(min=0).sqrt()
        objective = (w * a[None]).sum(-1) + r[None] * norm
        best = objective.masked_fill(~valid, torch.inf).argmin(0)
        w = w.gather(0, best[None, :, None].expand(1, k, t))[0].clamp(min=0.0)
        w = w / w.sum(-1, keepdim=True)
    gw = torch.einsum("kt,kts,ks->k", w, g, w).clamp(min=0).sqrt()
    return w, g0, gw


def _cagrad_mirror_descent(g: Tensor, a: Tensor, r: Tensor, steps: int = 2000, lr: float = 0.5) -> Tensor:
    """Exponentiated-gradient descent on the simplex for many tasks."""
    k, t, _ = g.shape
    w = torch.full((k, t), 1.0 / t, dtype=g.dtype, device=g.device)
    for _ in range(steps):
        gw = torch.einsum("kts,ks->kt", g, w)
        norm = (w * gw).sum(-1, keepdim=True).clamp(min=1e-30).sqrt()
        w = w * torch.exp(-lr * (a + r[:, None] * gw / norm))
        w = w / w.sum(-1, keepdim=True)
    return w


def nash_bargaining(gramian: Tensor, steps: int = 100, tol: float = 1e-9) -> tuple[Tensor, Tensor]:
    """The Nash bargaining weights of Navon et al. (2022): alpha > 0 with ``G alpha = 1 / alpha`` (elementwise).

    With D = diag(|g_t|) and C = D^-1 G D^-1 the gradients' correlation matrix, alpha = beta / |g| where
    ``C beta = 1 / beta``: the problem is invariant to each task's scale, and C's unit diagonal keeps it well
    conditioned whatever the spread of the norms. beta is the minimiser of the strictly convex, self-concordant
    ``f(b) = b^T C b / 2 - sum_t log b_t``, found by damped Newton steps ``b <- b + d / (1 + lambda)`` (lambda the
    Newton decrement: the damping keeps b > 0, and the steps converge quadratically near the solution). C carries
    a 1e-8 ridge, so that a solution exists even for opposed gradients (it is then of the order 1e4).

    Each replica stops when ``lambda <= tol`` - which bounds each beta_t's relative error by about lambda, as the
    Hessian's diagonal holds 1 / beta_t^2 - or when lambda, below 1e-3, no longer halves in a step (it would square
    in exact arithmetic: rounding is all that is left), with that step taken, or after ``steps`` steps.
    A task with a zero gradient gets alpha 0. G (K, T, T) -> (alpha (K, T), converged (K,) bool).
    """
    g = gramian.double()
    k, t, _ = g.shape
    diag = g.diagonal(dim1=-2, dim2=-1)
    live = diag > torch.finfo(torch.float64).tiny
    inv = torch.where(live, diag.clamp(min=torch.finfo(torch.float64).tiny).rsqrt(), 0.0)  # 1 / |g_t|
    eye = torch.eye(t, dtype=torch.float64, device=g.device)
    c = torch.where(live[:, :, None] & live[:, None, :], g * inv[:, :, None] * inv[:, None, :], eye) + 1e-8 * eye
    beta = torch.ones(k, t, dtype=torch.float64, device=g.device)
    converged = torch.zeros(k, dtype=torch.bool, device=g.device)
    previous = torch.full((k,), torch.inf, dtype=torch.float64, device=g.device)
    for _ in range(steps):
        grad = torch.einsum("kts,ks->kt", c, beta) - 1 / beta
        hessian = c + torch.diag_embed(1 / beta**2)
        delta = -torch.linalg.solve(hessian, grad)
        decrement = (-(grad * delta).sum(-1)).clamp(min=0).sqrt()  # lambda = sqrt(d^T H d)
        beta = torch.where(converged[:, None], beta, beta + delta / (1 + decrement[:, None]))
        converged = converged | (decrement <= tol) | ((decrement < 1e-3) & (decrement > previous / 2))
        previous = decrement
        if bool(converged.all()):
            break
    return beta * inv, converged
