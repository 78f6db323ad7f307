"""The look-ahead probe the loop hands a bilevel weighting method before each step
(:class:`~mtlab.weighting.base.LookAhead`; Auto-Lambda, Liu et al., TMLR 2022).

It evaluates the task losses of the step's batch or of the meta batch at temporarily moved parameters, takes
their gradients, and states the virtual step of the run's optimiser - for a solo model and K stacked replicas
alike (each parameter holds K rows' worth of values, so per-replica factors apply to a ``reshape(K, -1)`` view).
Forward passes here leave no trace: batch-norm running statistics and the parameters are put back exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Literal

import torch
from torch import Tensor

Batch = tuple[Tensor, dict[str, Tensor]]


class ParameterLookAhead:
    """The probe over any parameters: ``evaluate("step" | "meta")`` gives the (K, T) task losses, scaled by
    ``loss.weights``, of that batch at the parameters' current values; ``buffers`` (batch-norm running statistics)
    are put back after each evaluation. The virtual step reads the optimiser's first group (the model's)."""

    def __init__(
        self,
        parameters: list[Tensor],
        buffers: list[Tensor],
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[Literal["step", "meta"]], Tensor],
        replicas: int = 1,
    ):
        self.parameters = [p for p in parameters if p.requires_grad]
        self.buffers = list(buffers)
        self.optimizer = optimizer
        self.evaluate = evaluate
        self.replicas = replicas
        group = optimizer.param_groups[0]  # the model's group (a method's own parameters are the second)
        self.step_size = float(group["lr"])
        self.weight_decay = float(group.get("weight_decay", 0.0))
        self.momentum = float(group.get("momentum", 0.0))  # SGD only; Adam's groups have none

    def losses(self, batch: Literal["step", "meta"]) -> Tensor:
        saved = [b.clone() for b in self.buffers]
        losses = self.evaluate(batch)  # (K, T)
        with torch.no_grad():
            for b, value in zip(self.buffers, saved, strict=True):
                b.copy_(value)
        return losses.to(torch.promote_types(losses.dtype, torch.float32))  # bf16 / fp16 under autocast: float32

    def gradients(self, objective: Tensor) -> list[Tensor]:
        if not objective.requires_grad:  # every task left out: nothing reaches the parameters
            return [torch.zeros_like(p) for p in self.parameters]
        grads = torch.autograd.grad(objective, self.parameters, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.parameters, strict=True)]

    @torch.no_grad()
    def virtual_step(self, gradients: list[Tensor]) -> list[Tensor]:
        moves = []
        for p, g in zip(self.parameters, gradients, strict=True):
            direction = g + self.weight_decay * p
            buffer = self.optimizer.state.get(p, {}).get("momentum_buffer") if self.momentum else None
            if buffer is not None:
                direction = direction + self.momentum * buffer
            moves.append(-self.step_size * direction)
        return moves

    def per_replica(self, tensors: list[Tensor], factors: Tensor) -> list[Tensor]:
        return [(t.reshape(self.replicas, -1) * factors[:, None].to(t)).view_as(t) for t in tensors]

    @contextlib.contextmanager
    def moved(self, displacement: list[Tensor]) -> Iterator[None]:
        saved = [p.detach().clone() for p in self.parameters]
        with torch.no_grad():
            for p, d in zip(self.parameters, displacement, strict=True):
                p.add_(d)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(self.parameters, saved, strict=True):
                    p.copy_(value)


class ModelLookAhead(ParameterLookAhead):
    """The probe over the loop's replicas (SingleReplica or StackedReplicas), their losses and optimiser."""

    def __init__(
        self,
        replicas,
        losses,
        optimizer: torch.optim.Optimizer,
        step: Batch,
        meta: Batch,
        autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    ):
        batches = {"step": step, "meta": meta}

        def evaluate(batch: Literal["step", "meta"]) -> Tensor:
            x, y = batches[batch]
            with autocast():
                raw = losses.raw(replicas(x), y)  # (K, T)
            raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
            return torch.stack(losses.scaled(raw), dim=1)

        super().__init__(replicas.parameters(), replicas.buffer_tensors(), optimizer, evaluate, replicas.count)
        self.batches = batches
