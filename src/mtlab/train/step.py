"""The two ways one optimiser step can go, chosen once before the first epoch from the weighting method's kind.

* :class:`ScalarStep` - a loss-based method turns the task losses (K, T) into one objective (K,), back-propagated
  once (the replicas share no parameters, so the gradient of the sum is each replica's own gradient).
* :class:`JacobianStep` - a gradient-based method: T backward passes give the per-task gradients of the shared
  parameters as a Jacobian (K, T, P) - or, with ``loss.gradients: representation``, of the shared representation
  (K, T, B * F), whose combined gradient then goes down the trunk in one more pass (MGDA-UB, Sener & Koltun 2018) -
  the method combines them into the update, and task-owned parameters keep their own task's gradient. What is
  differentiated are the method's ``task_objectives`` of the losses (the losses themselves unless the method
  transforms them: DB-MTL's log-losses, IMTL's learned scales, whose parameters get their gradient here too); a
  method declaring ``samples = 2`` (double sampling) gets two half-batches, one Jacobian each.

Both apply ``loss.weights`` to the task losses first, share mixed precision (autocast; a GradScaler on CUDA fp16),
per-replica gradient clipping and the fused optimiser step, and call the method's ``after_step`` hook; a bilevel
method (``needs_meta_batch``) first gets its ``look_ahead`` on the next meta batch. With
``train.diagnostics`` both hand the task gradients' Gramian of a measured step to
:class:`~mtlab.train.diagnostics.ConflictDiagnostics` (the Jacobian step reuses its own Jacobian; the scalar step
takes T extra backward passes before its own); the update itself is unchanged.
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
from mtlab.weighting import WeightingMethod
from mtlab.weighting.jacobian import ParameterViews, flatten, gramian, task_jacobian, write_update

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
    """Shared by both strategies: the optimiser step with scaling, clipping and the method's hooks."""

    def __init__(
        self,
        replicas: Replicas,
        method: WeightingMethod,
        optimizer: torch.optim.Optimizer,
        losses: TaskLosses,
        *,
        grad_clip: float | None,
        autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
        scaler=None,
        diagnostics: ConflictDiagnostics | None = None,
        meta_batches: Iterator[tuple[Tensor, dict[str, Tensor]]] | None = None,
    ):
        if method.needs_meta_batch and meta_batches is None:
            raise ValueError(f"{method.name} looks ahead on a meta batch; pass meta_batches")
        self.meta_batches = meta_batches if method.needs_meta_batch else None
        self.replicas = replicas
        self.method = method
        self.optimizer = optimizer
        self.losses = losses
        self.grad_clip = grad_clip
        self.autocast = autocast
        self.scaler = scaler
        self.diagnostics = diagnostics

    def _measured(self) -> bool:
        return self.diagnostics is not None and self.diagnostics.due()

    def __call__(self, x: Tensor, y: dict[str, Tensor]) -> StepOutput:
        raise NotImplementedError

    def _look_ahead(self, x: Tensor, y: dict[str, Tensor]) -> None:
        """A bilevel method's look-ahead on the next meta batch, before the step's own forward pass."""
        if self.meta_batches is not None:
            probe = ModelLookAhead(self.replicas, self.losses, self.optimizer, (x, y), next(self.meta_batches),
                                   self.autocast)
            self.method.look_ahead(probe)

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

    def _after(self, x: Tensor, y: dict[str, Tensor], scaled: list[Tensor]) -> None:
        after = None
        if self.method.needs_losses_after_step:
            after = torch.stack(self.losses.scaled(self._losses_without_side_effects(x, y)), dim=1)
        self.method.after_step(torch.stack([s.detach() for s in scaled], dim=1), after)

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


class ScalarStep(TrainStep):
    """A loss-based method's step: ``objective.sum().backward()``."""

    def __call__(self, x: Tensor, y: dict[str, Tensor]) -> StepOutput:
        self._look_ahead(x, y)
        with self.autocast():
            logits = self.replicas(x)  # {task: (K, B, classes)}
            raw = self.losses.raw(logits, y)  # (K, T)
            scaled = self.losses.scaled(raw)
            objective, weights = self.method(torch.stack(scaled, dim=1))  # (K,), (K, T)
        if self._measured():
            self.diagnostics.record_losses(list(raw.unbind(1)), self._scale())
        self.optimizer.zero_grad(set_to_none=True)
        total = objective.sum()
        (total if self.scaler is None else self.scaler.scale(total)).backward()
        self._step()
        self._after(x, y, scaled)
        return StepOutput(raw.detach(), logits, weights * self.losses.static)


@dataclass
class _Sample:
    """One sample's forward pass and Jacobian (times its share of the batch)."""

    share: float
    logits: dict[str, Tensor]
    raw: Tensor  # (K, T)
    scaled: list[Tensor]  # T tensors (K,)
    factor: Tensor  # (K, T) d objective / d loss
    jacobian: Tensor  # (K, T, P)
    representation: Tensor | None


class JacobianStep(TrainStep):
    """A gradient-based method's step: per-task gradients, the method's combination, then the optimiser."""

    def __init__(self, *args, views: ParameterViews, representation_key: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.views = views
        self.owned = [views.owned.get(t, []) for t in self.losses.tasks]
        self.representation_key = representation_key  # balance this feature's gradients instead of the parameters'
        self.method_parameters = list(self.method.parameters())  # trained on the task objectives (IMTL's scales)
        if not views.shared:
            raise MtlabError(
                f"loss.method {self.method.name}: the model has no parameters that two tasks share "
                "(independent trunks without label reuse), so there are no gradients to balance"
            )

    def __call__(self, x: Tensor, y: dict[str, Tensor]) -> StepOutput:
        self._look_ahead(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        scale = self._scale()
        size = x.shape[1]
        # Double sampling (method.samples = 2): two disjoint halves of the batch, each its own Jacobian, both taken
        # with the weight of their share of the batch so that together they are the batch's gradient. A batch of
        # one example cannot be split: its Jacobian serves as both samples.
        cut = size // 2 if self.method.samples == 2 and size >= 2 else size
        parts = [self._sample(x[:, a:b], {t: v[:, a:b] for t, v in y.items()}, (b - a) / size, scale)
                 for a, b in ((0, cut), (cut, size)) if b > a]
        jacobian = sum(p.jacobian for p in parts)  # (K, T, P): the batch's
        if self.method.samples == 2:
            first, second = parts[0], parts[-1]
            cross = torch.einsum("ktp,ksp->kts", first.jacobian, second.jacobian) / (first.share * second.share)
        else:
            cross = gramian(jacobian)  # (K, T, T)
        update, weights = self.method.aggregate(jacobian, cross)  # (K, P), (K, T)
        if self._measured():
            if self.representation_key is None:
                # The batch's own Gramian: computed for a double-sampling method only when diagnostics ask for it.
                gram = gramian(jacobian) if self.method.samples == 2 else cross
                self.diagnostics.record_jacobian(jacobian, self.losses.static, gram)
            else:  # the rows are gradients of the representation: take them down to the trunk's parameters
                self.diagnostics.record_jacobian(
                    self._trunk_jacobian(parts[0].representation, jacobian), self.losses.static
                )
        if self.representation_key is not None:
            representation = parts[0].representation
            representation.backward((update * scale).view_as(representation).to(representation.dtype))
        else:
            write_update(update * scale, self.views.shared)
        self._step()
        scaled = [sum(p.share * p.scaled[t] for p in parts) for t in range(len(self.losses.tasks))]
        self._after(x, y, scaled)
        logits = {t: torch.cat([p.logits[t] for p in parts], dim=1) for t in parts[0].logits}
        raw = sum(p.share * p.raw for p in parts)
        factor = sum(p.share * p.factor for p in parts)  # d objective / d loss, for the recorded weights
        return StepOutput(raw.detach(), logits, weights.detach() * factor * self.losses.static)

    def _sample(self, x: Tensor, y: dict[str, Tensor], share: float, scale: float) -> _Sample:
        """Forward one sample (the batch, or half of it) and take the Jacobian of its task objectives, times
        ``share``; task-owned parameters (and the method's own) accumulate their gradients of the same."""
        with self.autocast():
            representation = None
            if self.representation_key is not None:
                features = self.replicas.features(x)  # {key: (K, B, F)}
                key = self.representation_key
                representation = features[key]
                leaf = representation.detach().requires_grad_()
                logits = self.replicas.heads({**features, key: leaf})
                inputs = [leaf]
                # Above the representation, shared head parameters (label-reuse sources) get the sum of their tasks'
                # gradients, accumulated by task_jacobian like owned ones.
                owned = [mine + self.views.above_representation_shared for mine in self.owned]
            else:
                logits = self.replicas(x)
                inputs, owned = self.views.shared, self.owned
            raw = self.losses.raw(logits, y)
            scaled = self.losses.scaled(raw)
            objectives, factor = self.method.task_objectives(torch.stack(scaled, dim=1))  # (K, T) each
        # A task of weight 0 stays detached (its loss carries no graph), whatever the method makes of it.
        objectives = [o * share if s.requires_grad else o.detach() for o, s in zip(objectives.unbind(1), scaled,
                                                                                     strict=True)]
        for_grad = objectives if self.scaler is None else [self.scaler.scale(o) for o in objectives]
        owned = [mine + self.method_parameters for mine in owned]
        jacobian, _ = task_jacobian(for_grad, inputs, owned, self.replicas.count)  # (K, T, P)
        return _Sample(share, logits, raw, scaled, factor.detach(), jacobian.float() / scale, representation)

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
    if method.step == "scalar":
        return ScalarStep(replicas, method, optimizer, losses, diagnostics=probe, **kwargs)
    return JacobianStep(
        replicas, method, optimizer, losses, views=views, representation_key=key, diagnostics=probe, **kwargs
    )


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
