"""One optimiser step of mtlab's trainer, through :class:`~mtlab.train.weighting.Weighting` - the object a user's own
loop steps with - so that ``mtlab run`` and a user's loop compute the same update (one code path, K stacked replicas
as K = 1).

The step forwards the batch (or each half of it, for a double-sampling method: the object's closure form) and hands
the raw task losses (K, T) to the object, which does what the method's kind needs:

* a loss-based method turns them into one objective (K,), back-propagated once (the replicas share no parameters,
  so the gradient of the sum is each replica's own gradient);
* a gradient-based method: T backward passes give the per-task gradients of the shared parameters as a Jacobian
  (K, T, P) - or, with ``loss.gradients: representation``, of the shared representation (K, T, B * F), whose
  combined gradient then goes down the trunk in one more pass (MGDA-UB, Sener & Koltun 2018) - the method combines
  them into the update, and task-owned parameters keep their own task's gradient. What is differentiated are the
  method's ``task_objectives`` of the losses (DB-MTL's log-losses, IMTL's learned scales).

The object applies ``loss.weights``, skips a replica's non-finite step leaving the method's state untouched, and
checks the hooks; the step adds mixed precision (autocast; a GradScaler on CUDA fp16), per-replica gradient clipping,
the fused optimiser step, the hooks themselves (``look_ahead`` on the next meta batch for a bilevel method, the losses
after the step, the end of an epoch in :mod:`mtlab.train.fit`) and, with ``train.diagnostics``, the task gradients'
Gramian of a measured step for :class:`~mtlab.train.diagnostics.ConflictDiagnostics` (a gradient-based step reuses
its own Jacobian; a loss-based one takes T extra backward passes before its own); the update itself is unchanged.
A skipped step (every replica, or a GradScaler's overflow) takes no optimiser step; in a stacked run a replica
skipped alone gets a zero gradient for that step while the others step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab.config.schema import Diagnostics, RunConfig
from mtlab.errors import MtlabError
from mtlab.tasks import Objective
from mtlab.train.diagnostics import ConflictDiagnostics
from mtlab.train.lookahead import ModelLookAhead
from mtlab.train.replicas import SingleReplica, StackedReplicas, clip_grad_norms
from mtlab.train.weighting import Half, Weighting
from mtlab.weighting import WeightingMethod
from mtlab.weighting.jacobian import ParameterViews, flatten, gramian

Replicas = SingleReplica | StackedReplicas


@dataclass
class StepOutput:
    """What the loop records of a step: raw task losses (K, T), outputs ``{task: (K, B, O)}``, and the weight
    each task's raw loss effectively got (K, T)."""

    losses: Tensor
    logits: dict[str, Tensor]
    weights: Tensor


class TaskLosses:
    """Each task's own loss (its type's: cross-entropy, BCE, MSE on standardised targets, ...) per replica, scaled
    by ``loss.weights``; a task of weight 0 is computed for the record but detached, so it adds nothing to any
    gradient (not even a NaN)."""

    def __init__(self, config: RunConfig, objectives: dict[str, Objective], device: torch.device):
        self.tasks = config.task_names
        self.objectives = objectives
        self.static = torch.tensor([config.loss.weights.get(t, 1.0) for t in self.tasks], device=device)
        # The reported total ("train.loss", "val.loss"): the mean of the task losses weighted by loss.weights.
        self.report = self.static / self.static.sum()

    def raw(self, logits: dict[str, Tensor], labels: dict[str, Tensor]) -> Tensor:
        """(K, T) unweighted task losses: ``logits[t]`` (K, B, O) against ``labels[t]`` (K, B[, L])."""
        return torch.stack([self.objectives[t].loss(logits[t], labels[t]) for t in self.tasks], dim=1)

    def scaled(self, raw: Tensor) -> list[Tensor]:
        """T tensors (K,): w_t L_t, detached where w_t = 0."""
        return [raw[:, i] * w if w > 0 else (raw[:, i] * 0).detach() for i, w in enumerate(self.static.tolist())]

    def total(self, raw: Tensor) -> Tensor:
        """(K,) the reported total; tasks of weight 0 are left out (their loss may be anything)."""
        return torch.where(self.report > 0, raw * self.report, torch.zeros_like(raw)).sum(1)


class TrainStep:
    """One optimiser step: the forward pass of the step's batch (or of each half, for a double-sampling method)
    handed to the run's :class:`~mtlab.train.weighting.Weighting` - the object a user's own loop steps with - then
    scaling, clipping, the optimiser step and the method's hooks."""

    def __init__(
        self,
        replicas: Replicas,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        losses: TaskLosses,
        *,
        grad_clip: float | None,
        autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
        scaler=None,
        diagnostics: ConflictDiagnostics | None = None,
        meta_batches: Iterator[tuple[Tensor, dict[str, Tensor]]] | None = None,
        representation_key: str | None = None,
    ):
        method = weighting.method
        if method.needs_meta_batch and meta_batches is None:
            raise ValueError(f"{method.name} looks ahead on a meta batch; pass meta_batches")
        self.meta_batches = meta_batches if method.needs_meta_batch else None
        self.replicas = replicas
        self.weighting = weighting
        self.method = method
        self.optimizer = optimizer
        self.losses = losses
        self.grad_clip = grad_clip
        self.autocast = autocast
        self.scaler = scaler
        self.diagnostics = diagnostics
        self.representation_key = representation_key  # balance this feature's gradients instead of the parameters'

    def _measured(self) -> bool:
        return self.diagnostics is not None and self.diagnostics.due()

    def __call__(self, x: Tensor, y: dict[str, Tensor]) -> StepOutput:
        if self.meta_batches is not None:  # a bilevel method's look-ahead, before the step's own forward pass
            probe = ModelLookAhead(self.replicas, self.losses, self.optimizer, (x, y), next(self.meta_batches),
                                   self.autocast)
            self.weighting.look_ahead_with(probe)
        self.optimizer.zero_grad(set_to_none=True)
        measured = self._measured()
        scale = self._scale()
        parts: list[tuple[Half, dict[str, Tensor], Tensor]] = []

        def closure(half: Half):
            xs, ys = half(x, dim=1), {t: half(v, dim=1) for t, v in y.items()}
            with self.autocast():
                if self.representation_key is not None:
                    features = self.replicas.features(xs)  # {key: (K, B, F)}
                    logits = self.replicas.heads(features)
                else:
                    features, logits = None, self.replicas(xs)  # {task: (K, B, O)}
                raw = self.losses.raw(logits, ys)  # (K, T)
            parts.append((half, logits, raw))
            if measured and self.method.step == "scalar":
                self.diagnostics.record_losses(list(raw.unbind(1)), scale)
            return raw if features is None else (raw, features[self.representation_key])

        inspect = self._inspect if measured and self.method.step != "scalar" else None
        bad = self.weighting.backward_per_replica(closure, scaler=self.scaler, inspect=inspect)  # (K,) skipped
        if self.scaler is not None or not bool(bad.all()):
            if bool(bad.any()) and self.scaler is None:  # a stacked run: the skipped replicas' rows get no gradient
                for p in self.replicas.parameters():
                    if p.grad is not None:
                        p.grad.masked_fill_(bad.to(p.device).view(-1, *([1] * (p.dim() - 1))), 0.0)
            self._step()
        after = None
        if self.method.needs_losses_after_step:
            after = self._losses_without_side_effects(x, y)
        self.weighting.after_step(after)
        logits = {t: torch.cat([logit[t] for _, logit, _ in parts], dim=1) for t in parts[0][1]}
        raw = sum(half.share * r for half, _, r in parts) if len(parts) > 1 else parts[0][2]
        weights = self.weighting.last_weights
        if weights is None:  # every step so far skipped
            weights = self.losses.static.expand(self.replicas.count, -1)
        return StepOutput(raw.detach(), logits, weights)

    def _inspect(self, jacobian: Tensor, cross: Tensor, representation: Tensor | None) -> None:
        """The diagnostics of a measured gradient-based step, from the Jacobian the method balanced."""
        if self.representation_key is None:
            # The batch's own Gramian: computed for a double-sampling method only when diagnostics ask for it.
            gram = gramian(jacobian) if self.method.samples == 2 else cross
            self.diagnostics.record_jacobian(jacobian, self.losses.static, gram)
        else:  # the rows are gradients of the representation: take them down to the trunk's parameters
            self.diagnostics.record_jacobian(self._trunk_jacobian(representation, jacobian), self.losses.static)

    def _step(self) -> None:
        if self.scaler is not None and self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            clip_grad_norms(self.replicas, self.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()

    @torch.no_grad()
    def _losses_without_side_effects(self, x: Tensor, y: dict[str, Tensor]) -> Tensor:
        """The updated model's raw losses on the same batch; batch-norm running statistics are put back after."""
        buffers = self.replicas.buffer_tensors()
        saved = [b.clone() for b in buffers]
        with self.autocast():
            raw = self.losses.raw(self.replicas(x), y)
        for b, value in zip(buffers, saved, strict=True):
            b.copy_(value)
        return raw.float()

    def _scale(self) -> float:
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    def _trunk_jacobian(self, representation: Tensor, jacobian: Tensor) -> Tensor:
        """(K, T, B * F) representation gradients -> (K, T, P) gradients of the diagnostics' shared tensors (the
        trunk below the representation), one backward pass per task through the trunk's graph, kept for the step."""
        rows = []
        for t in range(jacobian.shape[1]):
            grads = torch.autograd.grad(
                representation, self.diagnostics.shared, jacobian[:, t].reshape_as(representation).to(
                    representation.dtype), retain_graph=True, allow_unused=True
            )
            rows.append(flatten([g if g is not None else torch.zeros_like(p) for g, p in
                                 zip(grads, self.diagnostics.shared, strict=True)], self.replicas.count))
        return torch.stack(rows, dim=1).float()


def make_step(
    replicas: Replicas,
    model,
    method: WeightingMethod,
    optimizer: torch.optim.Optimizer,
    losses: TaskLosses,
    views: ParameterViews,
    diagnostics: Diagnostics | None = None,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
    **kwargs,
) -> TrainStep:
    """The step strategy for ``method``'s kind, checked against the model before any training; with
    ``diagnostics`` (``train.diagnostics``) it measures task-gradient conflict where there is any to measure."""
    key = None
    if method.step != "scalar" and method.options.gradients == "representation":
        representation = model.representation()
        if representation is None:
            raise MtlabError(
                "loss.gradients: representation needs a model whose heads all read one shared trunk "
                f"(model.sharing: shared); this {type(model).__name__} has none - use gradients: parameters"
            )
        key = representation[0]
    probe = _conflict_diagnostics(diagnostics, replicas, views, losses.tasks, trunk_only=key is not None)
    if method.step != "scalar" and not views.shared:
        raise MtlabError(
            f"loss.method {method.name}: the model has no parameters that two tasks share "
            "(independent trunks without label reuse), so there are no gradients to balance"
        )
    # Above the representation, shared head parameters (label-reuse sources) get the sum of their tasks' gradients.
    above = views.above_representation_shared if key is not None else []
    weighting = Weighting.of(
        method,
        shared=views.shared,
        task_parameters={t: views.owned.get(t, []) + above for t in losses.tasks},
        last_shared=views.last_shared,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
    )
    return TrainStep(replicas, weighting, optimizer, losses, diagnostics=probe, representation_key=key, **kwargs)


def _conflict_diagnostics(
    config: Diagnostics | None, replicas: Replicas, views: ParameterViews, tasks: list[str], trunk_only: bool
) -> ConflictDiagnostics | None:
    """None unless asked for and there is a pair of tasks sharing parameters (a single-task run, or independent
    trunks without label reuse, have no conflict to measure: they record nothing)."""
    shared = views.below_representation if trunk_only else views.shared
    if config is None or len(tasks) < 2 or not shared:
        return None
    names_of = {id(t): n for n, t in replicas.named_parameters().items()}
    names = [names_of[id(t)] for t in shared]
    return ConflictDiagnostics(tasks, config.every, shared, names, replicas.count, layers=config.layers)
