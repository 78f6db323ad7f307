"""Per-task gradients, their Gramian, and writing a combined update back - for K stacked replicas at once.

Parameters come as the training loop holds them: plain module parameters for a solo run (shape ``s``) or stacked
leaves (shape ``(K, *s)``) for K replicas. Either way each tensor holds ``numel / K`` values per replica, so one
``reshape(K, -1)`` gives a replica-major view and every helper here is the same code for K = 1 and K > 1.

Replicas share no parameters, so one backward pass of a task's loss summed over the replicas gives every replica's
own gradient of that task: a Jacobian (K, T, P) costs T backward passes whatever K is (issue 9, section 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ParameterViews:
    """The model's parameters as the training loop holds them, split by which task losses reach them.

    ``shared``: reached by more than one task (what gradient methods balance). ``owned[t]``: reached by task t alone.
    ``last_shared``: the parameters of the last parameterised layer of each shared part (GradNorm's W).
    ``representation``: for models whose heads all read one shared representation, the parameters below it
    (the trunk) and those above it that more than one task reaches (reuse cascades), else None.
    """

    replicas: int
    shared: list[Tensor]
    owned: dict[str, list[Tensor]]
    last_shared: list[Tensor] = field(default_factory=list)
    below_representation: list[Tensor] | None = None
    above_representation_shared: list[Tensor] = field(default_factory=list)


def flatten(tensors: list[Tensor], replicas: int) -> Tensor:
    """Concatenate per-replica values: tensors of ``replicas * n_i`` values -> (K, sum n_i)."""
    return torch.cat([t.reshape(replicas, -1) for t in tensors], dim=1)


def gramian(jacobian: Tensor) -> Tensor:
    """(K, T, P) -> (K, T, T), ``G[k] = J[k] J[k]^T``, by one einsum."""
    return torch.einsum("ktp,ksp->kts", jacobian, jacobian)


def task_jacobian(
    losses: list[Tensor], inputs: list[Tensor], owned: list[list[Tensor]], replicas: int
) -> tuple[Tensor, list[list[Tensor | None]]]:
    """Per-task gradients of ``losses`` (T tensors of shape (K,)) w.r.t. ``inputs`` as a Jacobian (K, T, P).

    One backward pass per task; the same pass also yields task t's gradient of the parameters it owns
    (``owned[t]``), which is added to their ``.grad`` (task-owned parameters keep their own task's gradient). A task
    whose loss carries no graph (weight 0) gets a zero row. Returns the Jacobian and, per task, the raw gradients
    of ``inputs`` (None where the task does not reach one).
    """
    rows, raw = [], []
    last = max((t for t, loss in enumerate(losses) if loss.requires_grad), default=-1)
    for t, loss in enumerate(losses):
        wanted = inputs + owned[t]
        if loss.requires_grad:
            grads = torch.autograd.grad(loss.sum(), wanted, retain_graph=t < last, allow_unused=True)
        else:
            grads = (None,) * len(wanted)
        mine = list(grads[: len(inputs)])
        raw.append(mine)
        rows.append(flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(mine, inputs, strict=True)],
                            replicas))
        for p, g in zip(owned[t], grads[len(inputs) :], strict=True):
            if g is not None:
                if p.grad is None:
                    p.grad = _like(p, g)
                else:
                    p.grad += g
    return torch.stack(rows, dim=1), raw


def write_update(update: Tensor, tensors: list[Tensor]) -> None:
    """Split the update (K, P) back into the tensors' shapes and set it as their ``.grad``."""
    replicas = update.shape[0]
    offset = 0
    for p in tensors:
        n = p.numel() // replicas
        p.grad = _like(p, update[:, offset : offset + n].reshape(p.shape))
        offset += n


def _like(p: Tensor, value: Tensor) -> Tensor:
    """``value`` copied into a tensor of ``p``'s dtype and memory layout (strides). Fused optimisers read a
    gradient in its parameter's layout, which autograd's accumulation guarantees and a plain assignment does not
    (a transposed gradient from a batched matmul's backward would be read in the wrong order)."""
    return torch.empty_like(p).copy_(value)
