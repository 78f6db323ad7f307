"""Task-gradient conflict on the shared parameters (``train.diagnostics: {every: N}``), for K replicas at once.

Every N optimiser steps the step strategy hands over the Gramian (K, T, T) of the per-task gradients of the *raw*
(unweighted) task losses on the shared parameters: a gradient-based method's step reuses the Jacobian it computed
anyway (its rows divided by ``loss.weights``), a loss-based method's step pays T extra backward passes on the same
graph. From ``G`` the cosine of tasks a and b is ``G_ab / sqrt(G_aa G_bb)`` and their magnitude ratio
``sqrt(G_aa / G_bb)`` (Yu et al. 2020, "Gradient surgery for multi-task learning", call a negative cosine a
conflict). Per epoch each replica's history gets, for each task pair ``a~b``:

* ``grad.a~b.cos_mean``, ``grad.a~b.cos_p10`` - mean and 10th percentile of the cosine over the measured steps,
* ``grad.a~b.conflict`` - the fraction of measured steps with cosine < 0,
* ``grad.a~b.ratio`` - the geometric mean of ``|g_a| / |g_b|`` (a ratio's natural average),
* ``grad.a~b.skipped`` - how many of the epoch's measured steps were left out of these for this pair: a step where
  the gradient of a or b is zero (e.g. a batch without a labelled example of the task) or was never computed has no
  cosine, and one such step would otherwise turn the pair's whole epoch to NaN,

and with ``layers: true`` the same per shared layer (``grad.a~b.<layer>.cos_mean`` ... ``.skipped``; a layer a
task's gradient does not reach on a step is skipped for that layer only), a layer being the parameters of one
module. A pair whose every step is skipped is NaN (with ``skipped`` the number of measured steps) - e.g. a task of
weight 0 under a gradient-based method, which never computes its gradient.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from mtlab.weighting.jacobian import flatten, gramian


def pair_key(a: str, b: str) -> str:
    return f"{a}~{b}"


class ConflictDiagnostics:
    """Counts steps, says when one is measured, collects the Gramians and summarises them per epoch.

    ``shared``: the tensors whose gradients are compared, as the loop holds them (plain or stacked, K replicas);
    ``names``: the same tensors' parameter names (used for per-layer groups when ``layers``).
    """

    def __init__(self, tasks: list[str], every: int, shared: list[Tensor], names: list[str], replicas: int,
                 layers: bool = False):
        self.tasks = list(tasks)
        self.every = every
        self.shared = shared
        self.replicas = replicas
        self.pairs = list(itertools.combinations(range(len(tasks)), 2))
        # Per-layer column ranges of the flattened (K, P) gradient: consecutive tensors of one module.
        self.layers: list[tuple[str, slice]] = []
        if layers:
            offset = 0
            by_module = itertools.groupby(zip(names, shared, strict=True), key=lambda x: x[0].rsplit(".", 1)[0])
            for module, group in by_module:
                size = sum(t.numel() // replicas for _, t in group)
                self.layers.append((module, slice(offset, offset + size)))
                offset += size
        self.steps = 0
        self._gramians: list[Tensor] = []  # each (K, 1 + L, T, T): whole shared part, then each layer

    def due(self) -> bool:
        """Called once per optimiser step: whether this step is measured (steps 1, N + 1, 2N + 1, ...)."""
        self.steps += 1
        return (self.steps - 1) % self.every == 0

    def record_losses(self, losses: list[Tensor], scale: float = 1.0) -> None:
        """T raw losses (K,) still attached to their graph (kept for the step's own backward pass afterwards)."""
        rows = []
        for loss in losses:
            grads = torch.autograd.grad(loss.sum() * scale, self.shared, retain_graph=True, allow_unused=True)
            rows.append(flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.shared,
                                                                                               strict=True)],
                                self.replicas))
        self.record_jacobian(torch.stack(rows, dim=1).float() / scale)  # (K, T, P)

    def record_jacobian(self, jacobian: Tensor, task_weights: Tensor | None = None, gram: Tensor | None = None) -> None:
        """The per-task gradients (K, T, P); when they are of losses scaled by ``task_weights`` (T,), the Gramian
        ``gram`` of those (reused when given) is unscaled by ``w_a w_b`` (a task of weight 0 becomes NaN)."""
        whole = gramian(jacobian) if gram is None else gram
        parts = [whole, *(gramian(jacobian[:, :, s]) for _, s in self.layers)]
        stacked = torch.stack(parts, dim=1).detach().float()  # (K, 1 + L, T, T)
        if task_weights is not None:
            w = task_weights.to(stacked)
            inverse = torch.where(w > 0, 1 / w, torch.full_like(w, math.nan))
            stacked = stacked * inverse[:, None] * inverse[None, :]
        self._gramians.append(stacked)

    def summary(self) -> list[dict[str, float]]:
        """Per replica, the epoch's statistics (empty if no step was measured); then starts a new epoch."""
        if not self._gramians or not self.pairs:
            self._gramians = []
            return [{} for _ in range(self.replicas)]
        g = torch.stack(self._gramians).double().cpu()  # (S, K, 1 + L, T, T)
        self._gramians = []
        diag = g.diagonal(dim1=-2, dim2=-1)  # (S, K, 1 + L, T)
        records: list[dict[str, float]] = [{} for _ in range(self.replicas)]
        scopes = [""] + [f".{name}" for name, _ in self.layers]
        for a, b in self.pairs:
            # A step counts for the pair where both squared norms are positive (not 0, not NaN): only there is the
            # cosine defined. The others are left out (NaN, then nan-aware statistics) and counted.
            measured = (diag[..., a] > 0) & (diag[..., b] > 0)  # (S, K, 1 + L)
            nan = torch.full_like(g[..., a, b], math.nan)
            cos = torch.where(measured, g[..., a, b] / (diag[..., a] * diag[..., b]).sqrt(), nan)
            log_ratio = torch.where(measured, 0.5 * (diag[..., a].log() - diag[..., b].log()), nan)
            conflict = torch.where(measured, (cos < 0).double(), nan)
            stats = {
                "cos_mean": cos.nanmean(0),
                "cos_p10": cos.nanquantile(0.1, dim=0),
                "conflict": conflict.nanmean(0),
                "ratio": log_ratio.nanmean(0).exp(),
                "skipped": (~measured).sum(0).double(),
            }  # each (K, 1 + L)
            for k in range(self.replicas):
                for i, scope in enumerate(scopes):
                    for name, value in stats.items():
                        records[k][f"grad.{pair_key(self.tasks[a], self.tasks[b])}{scope}.{name}"] = float(value[k, i])
        return records
