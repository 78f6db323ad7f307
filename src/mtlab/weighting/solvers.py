"""Small batched solvers for the T x T problems of gradient methods, for K replicas at once, without a QP package.

Each problem lives on the Gramian G (K, T, T) of T task gradients. Rather than a Python loop of solver calls per
replica and step (TorchJD and LibMTL call quadprog, cvxpy or SLSQP per step), every replica's problem is solved at
once, exactly (to rounding), by one of two means:

* up to ``MAX_ENUMERATED_TASKS`` tasks, by enumerating supports: the optimum of a convex problem over a polyhedron
  lies in the relative interior of one face, where the active constraints hold with equality and the stationarity
  conditions are linear (or, for CAGrad, a quadratic in one unknown). Each of the 2^T faces gives one candidate from
  one batched linear solve; the feasible candidate of least objective is the optimum (every feasible candidate is a
  feasible point, and the optimum's own face yields the optimum);
* beyond, by an active-set method (:func:`active_set_qp`: Lawson & Hanson's on the orthant, Wolfe's on the
  simplex) that moves from face to face and stops where the optimality conditions hold, after a few T face solves.

No problem is regularised beyond its definition: the Gramians are divided by their trace (every problem here is
invariant to G's scale) wherever the trace is positive, and faces whose system is singular are skipped, since the
optimum always lies on a face of affinely independent gradients (Caratheodory). So gradient norms may spread over
many orders of magnitude. All arithmetic is in float64; callers cast back.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

MAX_ENUMERATED_TASKS = 10
"""Up to this many tasks the 2^T faces are enumerated (1,024 small solves per replica); beyond, an active set."""

_TOL = 1e-9


def faces(tasks: int, device: torch.device, *, empty: bool = True) -> Tensor:
    """(S, T) float64 0/1 masks of every subset of the tasks (1 = in the subset); S = 2^T, or 2^T - 1 without the
    empty set."""
    codes = torch.arange(0 if empty else 1, 2**tasks, device=device)
    return ((codes[:, None] >> torch.arange(tasks, device=device)) & 1).to(torch.float64)


def normalized(gramian: Tensor) -> Tensor:
    """G / trace(G) (the Gramian of the Frobenius-normalised Jacobian), or 0 where the trace is 0: the solutions
    below are invariant to the scale of G, and this keeps their numbers well inside float range. The guard is on
    the trace alone, so gradients of any norm are normalised alike."""
    trace = gramian.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    positive = trace > 0
    return torch.where(positive, gramian / torch.where(positive, trace, torch.ones_like(trace)), 0.0)


def ridge(gramian: Tensor, eps: float) -> Tensor:
    """G + eps I: positive definite even where the gradients are linearly dependent."""
    eye = torch.eye(gramian.shape[-1], dtype=gramian.dtype, device=gramian.device)
    return gramian + eps * eye


def _solve(system: Tensor, rhs: Tensor) -> Tensor:
    """Batched ``system x = rhs`` (rhs with a trailing vector dimension); non-finite where the system is singular,
    which the callers treat as an infeasible candidate."""
    x, info = torch.linalg.solve_ex(system, rhs[..., None])
    x = x[..., 0]
    return x.masked_fill((info != 0)[..., None], torch.nan)


def _quadratic(x: Tensor, g: Tensor, y: Tensor | None = None) -> Tensor:
    """x^T G y over the last dimension, G broadcast over x's leading dimensions."""
    return (x * torch.einsum("...ts,...s->...t", g, x if y is None else y)).sum(-1)


# ------------------------------------------------------------------------------------------------ active set


def active_set_qp(h: Tensor, q: Tensor, *, simplex: bool, max_iterations: int | None = None) -> Tensor:
    """``argmin x^T H x / 2 + q^T x`` over ``x >= 0`` (and ``1^T x = 1`` when ``simplex``) for a batch of positive
    semi-definite H (B, T, T), q (B, T) -> x (B, T).

    A primal active-set method: Lawson & Hanson's (Solving Least Squares Problems, 1974, ch. 23) on the orthant, in
    the Gramian form of Bro & de Jong's FNNLS; on the simplex the same moves are Wolfe's minimum-norm-point
    algorithm (1976). x is the exact minimiser on its support P (the face's stationarity conditions, one linear
    system); while a coordinate outside P would decrease the objective (its reduced gradient ``(H x + q)_j - nu`` is
    negative, nu the face's multiplier of the sum, 0 on the orthant), the most decreasing one joins P; when the
    new face's minimiser z leaves the feasible set, x moves towards z as far as it stays feasible and the
    coordinates that reach 0 leave P. The objective decreases at every move and the supports' systems stay
    non-singular, so the method ends, typically after 1-3 T face solves. Each replica stops when the optimality
    conditions hold; the loop ends when all have, one batched face solve per iteration.
    """
    b, t = q.shape
    cap = max_iterations if max_iterations is not None else 10 * t + 50
    rows = torch.arange(b, device=q.device)
    diag = h.diagonal(dim1=-2, dim2=-1).clamp(min=0)
    x = torch.zeros_like(q)
    passive = torch.zeros(b, t, dtype=torch.bool, device=q.device)
    if simplex:  # start at the best vertex
        start = (diag / 2 + q).argmin(-1)
        x[rows, start] = 1.0
        passive[rows, start] = True
    settled = torch.ones(b, dtype=torch.bool, device=q.device)  # x minimises the objective on its support
    done = torch.zeros(b, dtype=torch.bool, device=q.device)
    entered = torch.zeros(b, dtype=torch.long, device=q.device)
    for _ in range(cap):
        gradient = torch.einsum("bts,bs->bt", h, x) + q
        nu = (x * gradient).sum(-1, keepdim=True) if simplex else torch.zeros_like(q[:, :1])
        # Rounding in the reduced gradient is about eps |H_jj x^T H x|^(1/2); the tolerance sits well above it.
        scale = (nu.abs() + (diag * (x * (gradient - q)).sum(-1, keepdim=True).abs()).sqrt() + q.abs())
        tol = 1e-12 * scale + 1e-300
        score = (nu - gradient).masked_fill(passive, -torch.inf) - tol
        best, enter = score.max(-1)
        done = done | (settled & ~(best > 0))
        if bool(done.all()):
            break
        grow = settled & ~done
        entered = torch.where(grow, enter, entered)
        passive = passive | (grow[:, None] & torch.nn.functional.one_hot(enter, t).bool())
        z = _face_minimiser(h, q, passive, simplex)
        z = torch.where(torch.isfinite(z).all(-1, keepdim=True), z, x)  # a singular face (rounding): no move
        inside = ((z > 0) | ~passive).all(-1)
        # A coordinate that joined but is not positive on its face: rounding at the optimum; stop there.
        stalled = grow & ~inside & (z[rows, entered] <= 0)
        passive = torch.where(stalled[:, None], passive & ~torch.nn.functional.one_hot(entered, t).bool(), passive)
        done = done | stalled
        moving = ~done
        ratio = torch.where(passive & (z <= 0), x / (x - z).clamp(min=1e-300), torch.inf)
        alpha = ratio.amin(-1).clamp(0.0, 1.0)
        target = torch.where(inside[:, None], z, x + alpha[:, None] * (z - x))
        leaving = ~inside[:, None] & passive & (target <= 1e-15 * target.abs().amax(-1, keepdim=True))
        passive = torch.where(moving[:, None], passive & ~leaving, passive)
        target = torch.where(passive, target, 0.0)
        if simplex:
            target = target / target.sum(-1, keepdim=True)
        x = torch.where(moving[:, None], target, x)
        settled = torch.where(moving, inside, settled)
    return x


def _face_minimiser(h: Tensor, q: Tensor, support: Tensor, simplex: bool) -> Tensor:
    """The stationary point of the objective of :func:`active_set_qp` on the face ``support`` (B, T) bool: 0 off
    the support, and ``(H z + q)_P = nu 1`` on it (nu = 0 on the orthant, else with ``1^T z = 1``)."""
    b, t = q.shape
    p = support.to(h.dtype)
    block = p[:, :, None] * h * p[:, None, :] + torch.diag_embed(1 - p)
    if not simplex:
        return _solve(block, -p * q)
    system = torch.zeros(b, t + 1, t + 1, dtype=h.dtype, device=h.device)
    system[:, :t, :t] = block
    system[:, :t, t] = -p
    system[:, t, :t] = p
    rhs = torch.cat([-p * q, torch.ones(b, 1, dtype=h.dtype, device=h.device)], -1)
    return _solve(system, rhs)[:, :t]


# ----------------------------------------------------------------------------------------- the dual cone


def project_to_dual_cone(u: Tensor, gramian: Tensor) -> Tensor:
    """Weights of the projection of J^T u onto the dual cone of J's rows, for K replicas and M vectors each.

    Solves ``min_v v^T G v  s.t.  v >= u`` (Quinton & Rey, 2024, Proposition 1): u (K, M, T), G (K, T, T) positive
    definite -> v (K, M, T). On the face where the coordinates F are free and the others sit at their bound,
    stationarity is ``(G v)_F = 0``: the system ``[diag(f) G + diag(1 - f)] v = (1 - f) * u``. Beyond
    ``MAX_ENUMERATED_TASKS``: ``v = u + x`` with x the active-set solution on the orthant for H = G, q = G u.
    """
    u, g = u.double(), gramian.double()
    k, m, t = u.shape
    if t > MAX_ENUMERATED_TASKS:
        h = g[:, None].expand(k, m, t, t).reshape(k * m, t, t)
        q = torch.einsum("kts,kms->kmt", g, u).reshape(k * m, t)
        return u + active_set_qp(h, q, simplex=False).reshape(k, m, t)
    free = faces(t, u.device)  # (S, T)
    system = free[:, None, :, None] * g[None] + torch.diag_embed(1 - free)[:, None]  # (S, K, T, T)
    rhs = (1 - free)[:, None, None, :] * u[None]  # (S, K, M, T)
    v = _solve(system[:, :, None], rhs)  # (S, K, M, T)
    feasible = (v >= u[None] - _TOL).all(-1)  # (S, K, M); NaN (a singular face) is not feasible
    v = v.nan_to_num()
    objective = torch.einsum("nkmt,kts,nkms->nkm", v, g, v).masked_fill(~feasible, torch.inf)
    best = objective.argmin(0)  # (K, M); the all-bound face (v = u) is always feasible
    return v.gather(0, best[None, ..., None].expand(1, k, m, t))[0]


# -------------------------------------------------------------------------------------------- the simplex


def _bordered(g: Tensor, support: Tensor) -> Tensor:
    """The systems ``[[G_FF, -1], [1^T, 0]]`` (identity rows off the face) of the faces ``support`` (S, T) of the
    simplex, for K Gramians (K, T, T) -> (S, K, T + 1, T + 1): the stationarity conditions ``(G w)_F - lambda 1 =
    rhs_F``, ``1^T w = rhs_T``. Non-singular exactly where the gradients of F are affinely independent."""
    k, t, _ = g.shape
    f = support[:, None].expand(-1, k, -1)  # (S, K, T)
    system = torch.zeros(f.shape[0], k, t + 1, t + 1, dtype=torch.float64, device=g.device)
    system[..., :t, :t] = f[..., :, None] * g[None] * f[..., None, :] + torch.diag_embed(1 - f)
    system[..., :t, t] = -f
    system[..., t, :t] = f
    return system


def min_norm_in_simplex(gramian: Tensor) -> Tensor:
    """``argmin_{w in simplex} w^T G w`` (Sener & Koltun, 2018): G (K, T, T) -> w (K, T), float64.

    Two tasks: the closed form ``w_1 = clamp((g_2 - g_1) . g_2 / |g_1 - g_2|^2, 0, 1)``. Up to
    ``MAX_ENUMERATED_TASKS``: on the face with support F, stationarity ``(G w)_F = lambda 1, w_F^T 1 = 1`` is one
    linear system in (w, lambda). More: the active-set method on the simplex (Wolfe's algorithm).
    """
    g = normalized(gramian.double())
    k, t, _ = g.shape
    if t == 1:
        return torch.ones(k, 1, dtype=torch.float64, device=g.device)
    if t == 2:
        diff = g[:, 0, 0] + g[:, 1, 1] - 2 * g[:, 0, 1]  # |g1 - g2|^2
        w1 = ((g[:, 1, 1] - g[:, 0, 1]) / diff.clamp(min=1e-300)).clamp(0.0, 1.0)
        w1 = torch.where(diff > 0, w1, 0.5)  # identical gradients: every w is optimal; the mean's
        return torch.stack([w1, 1 - w1], dim=1)
    if t > MAX_ENUMERATED_TASKS:
        return active_set_qp(g, torch.zeros(k, t, dtype=g.dtype, device=g.device), simplex=True)
    support = faces(t, g.device, empty=False)  # (S, T)
    system = _bordered(g, support)
    rhs = torch.zeros(system.shape[:-1], dtype=torch.float64, device=g.device)
    rhs[..., t] = 1.0
    w = _solve(system, rhs)[..., :t]  # (S, K, T)
    feasible = (w >= -_TOL).all(-1) & ((w.sum(-1) - 1).abs() < 1e-9)
    objective = _quadratic(w.nan_to_num(), g[None]).masked_fill(~feasible, torch.inf)
    best = objective.argmin(0)  # (K,); every vertex is feasible
    w = w.gather(0, best[None, :, None].expand(1, k, t))[0].clamp(min=0.0)
    return w / w.sum(-1, keepdim=True)


# ------------------------------------------------------------------------------------------------- CAGrad


def cagrad_simplex(gramian: Tensor, c: float) -> tuple[Tensor, Tensor, Tensor]:
    """CAGrad's dual (Liu et al., 2021, Eq. 4): ``min_{w in simplex} w^T G 1/T + c |g_0| sqrt(w^T G w)``.

    G (K, T, T) -> (w (K, T), |g_0| (K,), |g_w| (K,)), all for the normalised G (the weights the caller builds are
    invariant to G's scale). With a = G 1/T, r = c |g_0| and kappa = |g_w| / r, stationarity on the face with
    support F is ``(G w)_F + kappa a_F = lambda 1``, 1^T w = 1: w = w_1 + kappa w_2 is affine in kappa (the bordered
    system of the minimum-norm face, two right-hand sides), and ``|g_w| = r kappa`` is a quadratic in kappa.

    Up to ``MAX_ENUMERATED_TASKS`` every face, with each root, is a candidate. More: for a fixed kappa the dual's
    minimiser over w of ``g_0 . g_w + |g_w|^2 / (2 kappa)`` (the dual with r |g_w| majorised by
    ``r (|g_w|^2 / (2 s) + s / 2)``, s = r kappa, tight at s = |g_w|) is the minimum-norm point of the shifted
    gradients g_t + kappa g_0, and the optimum's kappa is the root of ``r kappa - |g_w(kappa)|``, which changes
    sign once (the majorised problem is jointly convex in (w, s)). It is found by bisection (geometric while the
    bracket starts at 0), trying first the exact root of the current trial's face, each trial solved by the
    active-set method on the simplex.
    """
    g = normalized(gramian.double())
    k, t, _ = g.shape
    a = g.mean(-1)  # (K, T): G 1/T
    g0 = a.mean(-1).clamp(min=0).sqrt()  # |g_0| = sqrt(1^T G 1) / T
    r = c * g0
    if t > MAX_ENUMERATED_TASKS:
        w = _cagrad_by_bisection(g, a, r)
    else:
        support = faces(t, g.device, empty=False)  # (S, T)
        _, w = _cagrad_faces(g, a, r, _bordered(g, support))  # (2, S, K, T)
        # The vertices are candidates too (the face formula needs a stationary point inside the face).
        vertices = torch.eye(t, dtype=torch.float64, device=g.device)[:, None].expand(t, k, t)
        w = torch.cat([w.flatten(0, 1), vertices])
        feasible = (w >= -_TOL).all(-1) & ((w.sum(-1) - 1).abs() < 1e-9)
        w = w.nan_to_num()
        objective = (w * a[None]).sum(-1) + r[None] * _quadratic(w, g[None]).clamp(min=0).sqrt()
        best = objective.masked_fill(~feasible, torch.inf).argmin(0)
        w = w.gather(0, best[None, :, None].expand(1, k, t))[0].clamp(min=0.0)
        w = w / w.sum(-1, keepdim=True)
    gw = _quadratic(w, g).clamp(min=0).sqrt()
    return w, g0, gw


def _cagrad_faces(g: Tensor, a: Tensor, r: Tensor, system: Tensor) -> tuple[Tensor, Tensor]:
    """The stationary points of CAGrad's dual on faces given by their bordered systems (S, K, T + 1, T + 1): one
    per root of the face's quadratic -> (kappa (2, S, K), w (2, S, K, T)), NaN where there is no positive root."""
    t = g.shape[-1]
    f = system[..., t, :t]  # (S, K, T): the faces' masks
    rhs = torch.zeros(2, *system.shape[:-1], dtype=torch.float64, device=g.device)
    rhs[0, ..., t] = 1.0  # w_1: the face's minimum-norm point
    rhs[1, ..., :t] = -f * a[None]  # w_2: how kappa moves it
    w1, w2 = _solve(system[None], rhs)[..., :t]
    qa, qb, qc = _quadratic(w1, g[None]), _quadratic(w1, g[None], w2), _quadratic(w2, g[None])
    lead = qc - r[None] ** 2  # |w_1 + kappa w_2|_G^2 = r^2 kappa^2:  (C - r^2) kappa^2 + 2 B kappa + A = 0
    disc = qb**2 - lead * qa
    big = -(qb + torch.where(qb >= 0, 1.0, -1.0) * disc.clamp(min=0).sqrt())  # the roots without cancellation:
    kappa = torch.stack([big / lead, qa / big])  # (2, S, K)
    kappa = torch.where((kappa > 0) & (disc >= 0), kappa, torch.nan)
    return kappa, w1[None] + kappa[..., None] * w2[None]


def _cagrad_by_bisection(g: Tensor, a: Tensor, r: Tensor, max_rounds: int = 200) -> Tensor:
    """CAGrad's dual for many tasks (see :func:`cagrad_simplex`): kappa by bisection on ``r kappa - |g_w(kappa)|``
    safeguarding the exact root of each trial's face; each trial a minimum-norm point by the active-set method."""
    k, t, _ = g.shape
    g0_sq = a.mean(-1)  # |g_0|^2
    active = r > 0  # c = 0 (or no gradient): the caller ignores w
    rr = torch.where(active, r, 1.0)
    low = torch.zeros(k, dtype=g.dtype, device=g.device)
    high = 1.0 / rr  # there r kappa = 1 >= max_t |g_t| >= |g_w|
    kappa = 0.5 * high
    w = torch.full((k, t), 1.0 / t, dtype=g.dtype, device=g.device)
    done = ~active
    zeros = torch.zeros(k, t, dtype=g.dtype, device=g.device)
    for _ in range(max_rounds):
        cross = a[:, :, None] + a[:, None, :]  # (g_s + kappa g_0) . (g_u + kappa g_0) = G_su + kappa (a_s + a_u) + ...
        shifted = g + kappa[:, None, None] * cross + (kappa**2 * g0_sq)[:, None, None]
        trial = active_set_qp(shifted, zeros, simplex=True)
        w = torch.where(done[:, None], w, trial)
        excess = rr * kappa - _quadratic(trial, g).clamp(min=0).sqrt()  # changes sign once, from - to +
        # At the root; or the root is at 0 (0 is in the hull and g_0 . g_w + r |g_w| >= 0 on it): then g_w(kappa)
        # tends to 0 along a limit direction, which a kappa of 1e-9 / r gives to about 1e-9.
        done = done | (excess.abs() <= 1e-12 * rr * kappa) | (rr * high <= 1e-9)
        if bool(done.all()):
            break
        low = torch.where(excess < 0, kappa, low)
        high = torch.where(excess >= 0, kappa, high)
        support = (trial > 0).to(g.dtype)  # (K, T)
        system = torch.zeros(1, k, t + 1, t + 1, dtype=g.dtype, device=g.device)
        system[0, :, :t, :t] = support[:, :, None] * g * support[:, None, :] + torch.diag_embed(1 - support)
        system[0, :, :t, t] = -support
        system[0, :, t, :t] = support
        roots, candidates = _cagrad_faces(g, a, r, system)
        roots, candidates = roots[:, 0], candidates[:, 0]  # (2, K), (2, K, T)
        usable = (roots > low) & (roots < high) & (candidates >= -_TOL).all(-1)
        pick = torch.where(usable, roots, torch.inf).amin(0)
        bisect = torch.where(low > 0, 0.5 * (low + high), high / 16)  # a root near 0 comes in 9 rounds to 1e-9
        kappa = torch.where(done, kappa, torch.where(torch.isfinite(pick), pick, bisect))
    return w


# ---------------------------------------------------------------------------------------------------- Nash


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


# ------------------------------------------------------------------------------------- simplex projection


def project_to_simplex(v: Tensor) -> Tensor:
    """The Euclidean projection of each row of v (..., T) onto the probability simplex (Held, Wolfe & Crowder,
    1974; the sort-based form of Duchi et al., 2008): ``max(v - theta, 0)`` with theta set so the row sums to one.
    The sorted coordinates that stay positive form a prefix, so rho (their count) is the count of those where
    ``u_j - (sum_{i<=j} u_i - 1) / j > 0``."""
    t = v.shape[-1]
    u = v.sort(-1, descending=True).values
    cumulative = u.cumsum(-1) - 1
    index = torch.arange(1, t + 1, dtype=v.dtype, device=v.device)
    rho = (u - cumulative / index > 0).sum(-1, keepdim=True).clamp(min=1)  # (..., 1)
    theta = cumulative.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp(min=0)


# --------------------------------------------------------------------------------------- alpha-fairness


def fair_allocation(gramian: Tensor, alpha: float, steps: int = 100, tol: float = 1e-10) -> tuple[Tensor, Tensor]:
    """FairGrad's weights (Ban & Ji, 2024, Eq. 4): w > 0 with ``G w = w^(-1/alpha)`` (elementwise), G (K, T, T).

    It is the stationary point of the strictly convex ``f(w) = w^T G w / 2 - sum_t u(w_t)`` with u' = w^(-1/alpha)
    (u = log w for alpha = 1, where it is Nash-MTL's problem; ``w^(1 - 1/alpha) / (1 - 1/alpha)`` otherwise), found
    by damped Newton steps ``w <- w + s d`` with ``s = 1 / (1 + lambda)`` (lambda the Newton decrement), shortened
    to keep w positive. It is solved on ``G / tr(G)``, with a ridge of 1e-10 times each task's own diagonal entry
    (so that a solution exists for opposed gradients, whatever the spread of the norms), and scaled back: if
    ``G = tau G'`` and w' solves G', then ``w = tau^(-alpha / (alpha + 1)) w'``. A task with a zero gradient gets
    weight 0. alpha = 0 is linear scalarisation: w = 1/T. Each replica stops at ``lambda <= tol`` or after
    ``steps`` steps -> (w (K, T), converged (K,) bool).
    """
    g = gramian.double()
    k, t, _ = g.shape
    if alpha == 0:
        return torch.full((k, t), 1.0 / t, dtype=torch.float64, device=g.device), torch.ones(k, dtype=torch.bool)
    trace = g.diagonal(dim1=-2, dim2=-1).sum(-1)  # (K,)
    live = g.diagonal(dim1=-2, dim2=-1) > torch.finfo(torch.float64).tiny * trace.clamp(min=1)[:, None]
    eye = torch.eye(t, dtype=torch.float64, device=g.device)
    c = torch.where(live[:, :, None] & live[:, None, :], normalized(g), eye)
    c = c + 1e-10 * torch.diag_embed(c.diagonal(dim1=-2, dim2=-1))  # relative to each task's own |g_t|^2
    w = torch.ones(k, t, dtype=torch.float64, device=g.device)
    converged = torch.zeros(k, dtype=torch.bool, device=g.device)
    for _ in range(steps):
        grad = torch.einsum("kts,ks->kt", c, w) - w.pow(-1 / alpha)
        hessian = c + torch.diag_embed(w.pow(-1 / alpha - 1) / alpha)
        delta = -torch.linalg.solve(hessian, grad)
        decrement = (-(grad * delta).sum(-1)).clamp(min=0).sqrt()
        room = torch.where(delta < 0, w / (-delta).clamp(min=1e-300), torch.inf).amin(-1)  # w + s d > 0 for s < room
        step = torch.minimum(1 / (1 + decrement), 0.9 * room)
        w = torch.where(converged[:, None], w, w + step[:, None] * delta)
        converged = converged | (decrement <= tol)
        if bool(converged.all()):
            break
    scale = torch.where(trace > 0, trace, torch.ones_like(trace)).pow(-alpha / (alpha + 1))
    return torch.where(live, w * scale[:, None], 0.0), converged


class UnconvergedSolves:
    """What a method whose weights come from an iterative solve with a step cap does with the solver's convergence
    flag: a state tensor ``unconverged`` (K,) counts, per replica, the solves that stopped at the cap unconverged
    (saved with the run's checkpoint under ``weighting``), and the first one is reported once per run by a
    RuntimeWarning naming the option that raises the cap. Mixed into an ``nn.Module`` method class, which calls
    :meth:`track_unconverged` in ``__init__`` and :meth:`count_unconverged` after each solve."""

    unconverged: Tensor

    def track_unconverged(self, replicas: int) -> None:
        self.register_buffer("unconverged", torch.zeros(replicas, dtype=torch.long))  # solves stopped at the cap
        self._warned_unconverged = False

    def count_unconverged(self, converged: Tensor, what: str, cap_option: str, cap: int) -> None:
        """``converged`` (K,) bool from this step's solve; ``what`` names the solution, ``cap_option`` the option
        holding the cap ``cap`` (e.g. ``loss.newton_steps``)."""
        self.unconverged += (~converged).to(self.unconverged.device, self.unconverged.dtype)
        if not self._warned_unconverged and not bool(converged.all()):
            self._warned_unconverged = True
            warnings.warn(
                f"{self.name}: {what} had not converged after {cap_option}={cap} Newton steps (replicas "
                f"{(~converged).nonzero()[:, 0].tolist()}); the update uses them as they are. Raise {cap_option}; "
                "every such solve is counted in the method's state 'unconverged'. Warned once.",
                RuntimeWarning,
                stacklevel=3,
            )
