"""Every weighting method in any PyTorch training loop: :class:`Weighting`, the one object mtlab's own trainer steps
with too (:mod:`mtlab.train.step`), so a user's loop and ``mtlab run`` cannot drift apart.

    weighting = mtlab.Weighting("upgrad", tasks=["item", "group"], shared=model.trunk.parameters())
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()])
    for x, y in loader:
        optimizer.zero_grad()
        out = model(x)
        weighting.backward({t: F.cross_entropy(out[t], y[t]) for t in tasks})
        optimizer.step()
        weighting.after_step()          # a no-op unless the method has an after-step hook
    weighting.end_epoch()               # after each epoch: a no-op unless the method has an end-of-epoch hook

``backward(losses)`` does what the method's kind needs (see :mod:`mtlab.weighting.base`): a loss-based method turns
the task losses into one objective, back-propagated once; a gradient-based method takes the per-task gradients of
the shared parameters (or of the shared representation, ``gradients="representation"``, as TorchJD's
``mtl_backward(features=...)``), combines them, and writes the update to the shared parameters' ``.grad``; every
other parameter a task reaches gets that task's own gradient. Gradients accumulate as ``Tensor.backward``'s do.

Hooks. A method that needs more than the losses says so, and the object asks for it by name; **a hook that was not
run is an error at the next** ``backward`` (nothing stays silently at its initial weights):

* an after-step hook (GradNorm renormalises its weights; FAMO needs the losses of the updated model on the same
  batch: ``after_step(losses)``) - ``backward`` twice without ``after_step`` in between is refused;
* an end-of-epoch hook (DWA, STCH) - the object needs ``steps_per_epoch`` and refuses step ``steps_per_epoch + 1``
  without an ``end_epoch()`` (it may come earlier: a last, shorter epoch);
* the last shared layer (GradNorm): ``last_shared=`` at construction;
* double sampling (MoDo, SDMGrad): ``backward(closure)``, ``closure(half)`` returning the losses of ``half(x)``,
  ``half(y)`` - the two halves of the batch (any method accepts this form; the others get the whole batch once);
* a look-ahead on a meta batch (Auto-Lambda): ``look_ahead(model, optimizer, losses_of, batch, meta_batch)`` before
  each ``backward``.

Non-finite steps (issue 29): a step whose losses, Jacobian or Gramian are not finite (an fp16 overflow) leaves the
method's state untouched (its generators included), writes no gradient, returns False and is counted
(``diagnostics()["skipped_steps"]``). With a ``torch.amp.GradScaler`` passed as ``scaler=`` the object differentiates
the scaled losses, and a skipped step writes the non-finite sum of the task gradients instead, so that
``scaler.step`` skips the optimiser step and ``scaler.update`` lowers the scale as it would for
``scaler.scale(loss).backward()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from mtlab.config.load import format_error
from mtlab.errors import ConfigError, MtlabError, did_you_mean
from mtlab.train.lookahead import ParameterLookAhead
from mtlab.weighting.base import LookAhead, MethodOptions, WeightingMethod, method_class, registered_methods
from mtlab.weighting.jacobian import ParameterViews, flatten, gramian

Losses = Mapping[str, Tensor] | Tensor


class Half:
    """One sample of a double-sampling step: ``half(tensor, dim=0)`` is this half of ``tensor`` along ``dim`` (the
    first ``n // 2`` examples, or the rest). ``whole``: the batch itself (a method taking one sample, or a batch of
    one example, which cannot be split).

    Example:
        A loop hands :meth:`Weighting.backward` a closure; MoDo and SDMGrad call it once per half:

        ```python
        def closure(half):                                     # half: a Half
            out = model(half(x))                               # (B/2, ...)
            return {t: F.cross_entropy(out[t], half(y[t])) for t in tasks}

        weighting.backward(closure)
        ```
    """

    def __init__(self, index: int, whole: bool = False):
        self.index = index
        self.whole = whole
        self.share: float | None = None  # this half's share of the batch, known once a tensor was cut

    def __call__(self, tensor: Tensor, dim: int = 0) -> Tensor:
        n = tensor.shape[dim]
        if self.whole or n < 2:
            self.share = 1.0
            return tensor
        a, b = (0, n // 2) if self.index == 0 else (n // 2, n)
        self.share = (b - a) / n
        return tensor.narrow(dim, a, b - a)


class Weighting:
    """A weighting method with its state, for a training loop of one's own (see the module's docstring).

    Call :meth:`backward` where the loop called ``loss.backward()``; the hooks a method has (``after_step``,
    ``end_epoch``, ``look_ahead``) are asked for by name, and one not run is an error at the next ``backward``.

    Args:
        method: A registered name (``mtlab weightings``), or a mapping / options object with ``method``.
        tasks: The task names, in the order the losses come.
        shared: The parameters more than one task reaches (what a gradient-based method balances; with
            ``gradients="representation"`` they are not needed).
        task_parameters: ``{task: parameters}`` only that task reaches; default: found in each loss's graph, as
            TorchJD's ``mtl_backward`` does.
        last_shared: The parameters of the last shared layer (GradNorm).
        steps_per_epoch: For a method with an end-of-epoch hook (DWA, STCH).
        epochs: The run's length, for a method that plans over it.
        generator: The method's random draws (PCGrad's orders, GradDrop, RLW; torch's global generator when None).
        diagnose: Keep each step's task Gramian for :meth:`diagnostics` (a loss-based method pays T extra backward
            passes for it).
        **options: The method's own (the same typed options as a config's ``loss`` section, validated the same
            way).

    Raises:
        ConfigError: An unknown method (with the closest name) or an invalid option, one line each.

    Example:
        ```python
        import mtlab
        import torch.nn.functional as F

        weighting = mtlab.Weighting("upgrad", tasks=["item", "group"], shared=model.trunk.parameters())
        optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()])
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)                                    # {task: (B, classes)}
            weighting.backward({t: F.cross_entropy(out[t], y[t]) for t in ["item", "group"]})
            optimizer.step()
            weighting.after_step()                            # a no-op unless the method has the hook
        ```
    """

    def __init__(
        self,
        method: str | Mapping[str, Any] | MethodOptions,
        /,
        *,
        tasks: Iterable[str],
        shared: Iterable[Tensor] | None = None,
        task_parameters: Mapping[str, Iterable[Tensor]] | None = None,
        last_shared: Iterable[Tensor] | None = None,
        steps_per_epoch: int | None = None,
        epochs: int | None = None,
        generator: torch.Generator | None = None,
        diagnose: bool = False,
        **options: Any,
    ):
        tasks = list(tasks)
        raw = method.model_dump() if isinstance(method, MethodOptions) else (
            {"method": method} if isinstance(method, str) else dict(method))
        raw.update(options)
        name = raw.setdefault("method", "fixed")
        if name not in registered_methods():
            raise ConfigError(f"mtlab.Weighting: unknown method {name!r}; "
                              + did_you_mean(name, registered_methods(), f"known: {', '.join(registered_methods())}"))
        cls = method_class(name)
        try:
            validated = cls.Options.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(format_error(e, raw, f"mtlab.Weighting({name!r}) option ", model=cls.Options)) from None
        problem = getattr(validated, "run_problem", None)  # options that cannot work in a run of this length
        found = problem(epochs) if problem is not None and epochs is not None else None
        if found is not None:
            raise ConfigError(f"mtlab.Weighting({name!r}) option {found[0]}: {found[1]}")
        self._setup(cls(tasks, 1, validated, [generator]), shared, task_parameters, last_shared, steps_per_epoch,
                    diagnose, epochs)

    @classmethod
    def of(
        cls,
        method: WeightingMethod,
        *,
        shared: Iterable[Tensor] | None = None,
        task_parameters: Mapping[str, Iterable[Tensor]] | None = None,
        last_shared: Iterable[Tensor] | None = None,
        steps_per_epoch: int | None = None,
        diagnose: bool = False,
        epochs: int | None = None,
    ) -> Weighting:
        """Around a method already built (mtlab's trainer: K stacked replicas, seeded generators)."""
        self = cls.__new__(cls)
        self._setup(method, shared, task_parameters, last_shared, steps_per_epoch, diagnose, epochs)
        return self

    def _setup(self, method, shared, task_parameters, last_shared, steps_per_epoch, diagnose, epochs) -> None:
        self.method = method
        self.name = method.name
        self.tasks = list(method.tasks)
        self.replicas = method.replicas
        self.shared = list(shared) if shared is not None else None
        self.task_parameters = (
            {t: list(task_parameters.get(t, [])) for t in self.tasks} if task_parameters is not None else None
        )
        self.last_shared = list(last_shared) if last_shared is not None else None
        self.diagnose = diagnose
        self.representation = method.step == "jacobian" and method.options.gradients == "representation"
        self.static = method.loss_weights()  # loss.weights (T,)
        self.has_after_step = _overrides(method, "after_step")
        self.has_end_epoch = _overrides(method, "after_epoch")
        if self.has_end_epoch and steps_per_epoch is None:
            raise MtlabError(f"{self.name} updates its weights at the end of each epoch: pass steps_per_epoch=<steps "
                             "in an epoch> and call end_epoch() after each epoch")
        self.steps_per_epoch = steps_per_epoch
        if _overrides(method, "bind") and last_shared is None:
            raise MtlabError(f"{self.name} reads the gradients at the last shared layer: pass last_shared=<the "
                             "parameters of the model's last shared layer>")
        if method.step == "jacobian" and not self.representation and not self.shared:
            raise MtlabError(f"{self.name} balances the gradients of the shared parameters: pass shared=<the "
                             "parameters every task reaches>, or gradients='representation' and backward(losses, "
                             "features=<the shared representation>)")
        owned = self.task_parameters or {t: [] for t in self.tasks}
        method.bind(ParameterViews(self.replicas, self.shared or [], owned, self.last_shared or []))
        if _overrides(method, "plan"):  # a schedule that is a share of the run (the method's own plan hook)
            if epochs is None or steps_per_epoch is None:
                raise MtlabError(f"{self.name} schedules itself over the whole run: pass epochs=<epochs> and "
                                 "steps_per_epoch=<steps in an epoch>")
            method.plan(epochs, steps_per_epoch)
        self.skipped = torch.zeros(self.replicas, dtype=torch.long)
        self.steps = 0
        self._awaiting_after_step = False
        self._looked_ahead = False
        self._before_look_ahead: dict[str, Any] | None = None
        self._epoch_steps = 0
        self._epoch_losses: Tensor | None = None  # (K, T) sum of the raw losses of this epoch's steps
        self._epoch_counts: Tensor | None = None  # (K, 1) steps summed in it (skipped ones are left out)
        self._step_losses: Tensor | None = None  # (K, T) the last step's scaled losses, detached
        self._last_skipped = torch.zeros(self.replicas, dtype=torch.bool)
        self.last_weights: Tensor | None = None  # (K, T) the weight each raw task loss got at the last step
        self.last_gramian: Tensor | None = None  # (K, T, T) of the balanced gradients (diagnose or Jacobian step)
        self.last_jacobian: Tensor | None = None

    # ------------------------------------------------------------------------------------------ what users call

    def parameters(self) -> list[Tensor]:
        """The method's own learnable parameters (uncertainty's log-variances, IMTL's scales, GradNorm's
        weights): give them to the optimiser."""
        return list(self.method.parameters())

    def to(self, device: torch.device | str) -> Weighting:
        """The method's parameters and state on ``device`` (done on the first ``backward`` otherwise, from the
        losses' device; parameters keep their identity, so an optimiser built before still holds them)."""
        self.method.to(device)
        return self

    @property
    def needs_losses_after_step(self) -> bool:
        return self.method.needs_losses_after_step

    @property
    def needs_meta_batch(self) -> bool:
        return self.method.needs_meta_batch

    @property
    def samples(self) -> int:
        """Independent gradient samples per step: 2 for double sampling (call ``backward(closure)``)."""
        return getattr(self.method, "samples", 1)

    def backward(self, losses: Losses | Callable[[Half], Any], *, features: Tensor | None = None,
                 scaler: Any = None) -> bool:
        """One step's gradients from ``losses`` (``{task: scalar}``, or a (T,) tensor in task order), or from
        ``closure(half)`` returning them for ``half(x)`` (double sampling; with ``gradients="representation"`` it
        returns ``(losses, features)``). Returns False when the step was skipped as not finite."""
        bad = self.backward_per_replica(losses, features=features, scaler=scaler)
        return not bool(bad.all())

    def after_step(self, losses: Losses | None = None) -> None:
        """After ``optimizer.step()``: the method's after-step hook; ``losses``: the task losses of the updated model
        on the same batch (FAMO), computed without gradient."""
        pending = self._awaiting_after_step
        self._awaiting_after_step = False
        if not self.has_after_step or not pending:
            return
        after = None
        if self.method.needs_losses_after_step:
            if losses is None:
                raise MtlabError(f"{self.name} needs the losses after each step: call after_step(losses) with the "
                                 "task losses of the updated model on the same batch (under torch.no_grad())")
            after = torch.stack(self._scaled(self._stack(losses)), dim=1).detach()
            bad = ~torch.isfinite(after).all(1).cpu()
        else:
            bad = torch.zeros(self.replicas, dtype=torch.bool)
        self._guarded(bad | self._last_skipped, lambda: self.method.after_step(self._step_losses, after))

    def end_epoch(self, losses: Losses | None = None) -> None:
        """After each epoch: the method's end-of-epoch hook with the epoch's mean task losses (default: the mean of
        the losses ``backward`` saw since the last ``end_epoch``)."""
        if self.has_end_epoch:
            if losses is not None:
                mean = self._stack(losses).detach()
            elif self._epoch_losses is not None:
                mean = self._epoch_losses / self._epoch_counts  # NaN for a replica all of whose steps were skipped
            else:
                mean = None
            if mean is not None:
                self._guarded(~torch.isfinite(mean).all(1).cpu(), lambda: self.method.after_epoch(mean))
        self._epoch_steps = 0
        self._epoch_losses = self._epoch_counts = None

    def look_ahead(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   losses_of: Callable[[Any], Losses], batch: Any, meta_batch: Any) -> None:
        """Before ``backward`` (Auto-Lambda): ``losses_of(batch)`` gives the task losses of ``model`` on a batch;
        ``meta_batch`` is another batch of the training data. A no-op for a method without a look-ahead."""
        if not self.method.needs_meta_batch:
            return
        batches = {"step": batch, "meta": meta_batch}

        def evaluate(which):
            return torch.stack(self._scaled(self._stack(losses_of(batches[which]))), dim=1)

        self.look_ahead_with(ParameterLookAhead(list(model.parameters()), list(model.buffers()), optimizer,
                                                evaluate))

    def look_ahead_with(self, probe: LookAhead) -> None:
        """The look-ahead with a probe of one's own (:class:`~mtlab.weighting.base.LookAhead`)."""
        parameters = getattr(probe, "parameters", None)
        self._ensure_device(parameters[0] if parameters else None)
        everything = torch.ones(self.replicas, dtype=torch.bool)
        self._before_look_ahead = self._snapshot(everything)  # restored if the step is then skipped
        self.method.look_ahead(probe)
        self._restore(self._before_look_ahead, ~self._finite_state())  # a non-finite hypergradient changes nothing
        self._looked_ahead = True

    def weights(self) -> dict[str, float] | dict[str, list[float]]:
        """The weight each task's loss got at the last step ({} before the first): ``{task: w}`` (K replicas:
        ``{task: [w_1, ..., w_K]}``)."""
        if self.last_weights is None:
            return {}
        w = self.last_weights.detach().double().cpu()
        if self.replicas == 1:
            return {t: float(w[0, i]) for i, t in enumerate(self.tasks)}
        return {t: w[:, i].tolist() for i, t in enumerate(self.tasks)}

    def diagnostics(self) -> dict[str, float]:
        """A plain dict for any logger: ``steps``, ``skipped_steps``, and from the last step's Gramian of the gradients
        the method balanced (kept by a gradient-based method, or with ``diagnose=True``) ``grad.<a>.norm`` and
        ``grad.<a>~<b>.cos`` per task pair (replica 1)."""
        out: dict[str, float] = {"steps": float(self.steps), "skipped_steps": float(self.skipped[0])}
        g = self.last_gramian
        if g is not None:
            g = g[0].detach().double().cpu()
            norms = g.diagonal().clamp(min=0).sqrt()
            for i, a in enumerate(self.tasks):
                out[f"grad.{a}.norm"] = float(norms[i])
                for j in range(i + 1, len(self.tasks)):
                    denominator = float(norms[i] * norms[j])
                    out[f"grad.{a}~{self.tasks[j]}.cos"] = float(g[i, j]) / denominator if denominator > 0 else \
                        float("nan")
        return out

    def state_dict(self) -> dict[str, Any]:
        """The method's parameters and state, its generators' states and the object's step counters: load into a
        fresh object (and the optimiser's own state into the optimiser) and the loop continues exactly."""
        return {
            "method": {k: v.detach().clone() for k, v in self.method.state_dict().items()},
            "generators": [g.get_state() if g is not None else None for g in self.method.generators],
            "skipped": self.skipped.clone(),
            "steps": self.steps,
            "awaiting_after_step": self._awaiting_after_step,
            "epoch_steps": self._epoch_steps,
            "epoch_losses": None if self._epoch_losses is None else self._epoch_losses.clone(),
            "epoch_counts": None if self._epoch_counts is None else self._epoch_counts.clone(),
            "step_losses": None if self._step_losses is None else self._step_losses.clone(),
            "last_skipped": self._last_skipped.clone(),
            "last_weights": None if self.last_weights is None else self.last_weights.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        current = self.method.state_dict(keep_vars=True)
        missing = sorted(set(current) ^ set(state["method"]))
        if missing:
            raise MtlabError(f"{self.name}: the saved state does not fit this method (keys {missing})")
        with torch.no_grad():
            for key, value in state["method"].items():
                target = current[key]
                if key in self.method._buffers and target.shape != value.shape:  # sized at the first step (MoCo)
                    self.method._buffers[key] = value.to(target.device, target.dtype).clone()
                else:
                    target.copy_(value)
        for g, saved in zip(self.method.generators, state["generators"], strict=True):
            if g is not None and saved is not None:
                g.set_state(saved)
        self.skipped = state["skipped"].clone()
        self.steps = int(state["steps"])
        self._awaiting_after_step = bool(state["awaiting_after_step"])
        self._epoch_steps = int(state["epoch_steps"])
        self._epoch_losses = state["epoch_losses"]
        self._epoch_counts = state["epoch_counts"]
        self._step_losses = state["step_losses"]
        self._last_skipped = state["last_skipped"].clone()
        self.last_weights = state["last_weights"]

    def __repr__(self) -> str:
        return f"Weighting({self.name!r}, tasks={self.tasks})"

    # ------------------------------------------------------------------------------------------------ the step

    def backward_per_replica(self, losses, *, features: Tensor | None = None, scaler: Any = None,
                  inspect: Callable[[Tensor, Tensor, Tensor | None], None] | None = None) -> Tensor:
        """``backward`` for K stacked replicas (mtlab's trainer; losses (K,) per task): returns which replicas were
        skipped, (K,) bool on the CPU. A replica skipped alone gets no gradient from a gradient-based method; under
        a loss-based one the caller zeroes its rows (its objective is masked, but an infinite loss can still send
        NaN down its own rows). ``inspect(jacobian, gramian, features)`` (the trainer's diagnostics) sees a
        gradient-based step before its update is written."""
        self._check_hooks(callable(losses))
        self._looked_ahead = False
        if self.method.step == "scalar":
            bad = self._scalar(losses, features, scaler)
        else:
            bad = self._jacobian(losses, features, scaler, inspect)
        if self._before_look_ahead is not None:  # a skipped step's look-ahead is undone with it
            self._restore(self._before_look_ahead, bad)
            self._before_look_ahead = None
        self.steps += 1
        self._epoch_steps += 1
        self.skipped += bad.long()
        self._last_skipped = bad
        self._awaiting_after_step = self.has_after_step and not bool(bad.all())
        return bad

    def _check_hooks(self, closure: bool) -> None:
        m = self.method
        if self._awaiting_after_step:
            what = "after_step(losses) with the losses of the updated model on the same batch" \
                if m.needs_losses_after_step else "after_step()"
            raise MtlabError(f"{self.name} has an after-step hook that was not run: call weighting.{what} after "
                             "each optimizer.step(), before the next backward")
        if m.needs_meta_batch and not self._looked_ahead:
            raise MtlabError(f"{self.name} looks ahead on a meta batch before each step: call weighting.look_ahead("
                             "model, optimizer, losses_of, batch, meta_batch) before backward (meta_batch: another "
                             "batch of the training data)")
        if self.has_end_epoch and self._epoch_steps >= self.steps_per_epoch:
            raise MtlabError(f"{self.name} updates its weights at the end of each epoch: call weighting.end_epoch() "
                             f"after each epoch (steps_per_epoch={self.steps_per_epoch} backward calls have run "
                             "since the last one)")
        if self.samples == 2 and not closure:
            raise MtlabError(f"{self.name} takes two independent gradient samples per step (double sampling): call "
                             "backward(closure), closure(half) returning the task losses of half(x), half(y)")

    def _stack(self, losses: Losses) -> Tensor:
        """``{task: loss}`` (scalars, or (K,) for K replicas) or a tensor in task order -> (K, T)."""
        if isinstance(losses, Tensor):
            stacked = losses.reshape(self.replicas, -1) if losses.dim() < 2 else losses
        else:
            if not isinstance(losses, Mapping):
                raise TypeError(f"{self.name}: losses must be a mapping task -> loss, got {type(losses).__name__}")
            unknown = sorted(set(losses) - set(self.tasks))
            missing = [t for t in self.tasks if t not in losses]
            if unknown or missing:
                raise MtlabError(f"{self.name}: losses for the tasks {self.tasks}; got unknown {unknown}, "
                                 f"missing {missing}")
            stacked = torch.stack([losses[t].reshape(self.replicas) for t in self.tasks], dim=1)
        if stacked.shape != (self.replicas, len(self.tasks)):
            raise MtlabError(f"{self.name}: {len(self.tasks)} task losses expected, got shape {tuple(stacked.shape)}")
        return stacked

    def _scaled(self, raw: Tensor) -> list[Tensor]:
        """T tensors (K,): w_t L_t (``loss.weights``), detached where w_t = 0."""
        return [raw[:, i] * w if w > 0 else (raw[:, i] * 0).detach() for i, w in enumerate(self.static.tolist())]

    def _ensure_device(self, like: Tensor | None) -> None:
        if like is None:
            return
        for t in [*self.method.parameters(), *self.method.buffers()]:
            if t.device != like.device:
                self.method.to(like.device)
            return

    def _record(self, raw: Tensor, step_losses: Tensor, bad: Tensor) -> None:
        """The step's losses for the epoch's mean (a skipped replica's left out) and for the after-step hook."""
        good = (~bad).to(raw.device)[:, None]
        raw = torch.where(good, raw.detach(), torch.zeros_like(raw))
        counts = good.to(raw.dtype)
        if self._epoch_losses is None:
            self._epoch_losses, self._epoch_counts = raw.clone(), counts
        else:
            self._epoch_losses, self._epoch_counts = self._epoch_losses + raw, self._epoch_counts + counts
        self._step_losses = step_losses

    def _finite_losses(self, raw: Tensor) -> Tensor:
        """(K,) on the CPU: every task loss in training (loss.weights > 0) is finite."""
        kept = (self.static > 0).to(raw.device)
        return (torch.isfinite(raw.detach()) | ~kept).all(1).cpu()

    def _scalar(self, losses, features: Tensor | None, scaler) -> Tensor:
        if callable(losses):
            out = losses(Half(0, whole=True))
            losses, features = out if isinstance(out, tuple) else (out, None)
        raw = self._stack(losses)
        self._ensure_device(raw)
        scaled = self._scaled(raw)
        stacked = torch.stack(scaled, dim=1)
        bad = ~self._finite_losses(raw)
        if scaler is not None and bool(bad.any()):
            # As for gradient methods: the scaler skips the whole step, so every replica's state goes back, and the
            # non-finite objective is still differentiated below so that ``scaler.step`` sees the overflow.
            bad = torch.ones_like(bad)
        self._record(raw, stacked.detach(), bad)
        if bool(bad.all()) and scaler is None:
            return bad
        if self.diagnose:
            inputs = [features] if features is not None else (self.shared or [])
            if inputs:
                self.last_gramian = gramian(self._rows(scaled, inputs))
        snapshot = self._snapshot(bad) if bool(bad.any()) or scaler is not None else None
        objective, weights = self.method(stacked)  # (K,), (K, T)
        if bool(bad.any()) and scaler is None:  # without a scaler, a replica with a non-finite loss gets no gradient
            objective = torch.where(bad.to(objective.device), torch.zeros_like(objective), objective)
        total = objective.sum()
        (total if scaler is None else scaler.scale(total)).backward()
        if scaler is not None and self.shared:
            overflow = ~torch.isfinite(flatten([p.grad if p.grad is not None else torch.zeros_like(p)
                                                for p in self.shared], self.replicas)).all(1).cpu()
            if bool(overflow.any()):  # the scaler skips the whole step: every replica's state goes back
                bad = torch.ones_like(bad)
        if snapshot is not None:
            self._restore(snapshot, bad)
        self._set_weights(weights.detach() * self.static.to(weights), bad)
        return bad

    def _rows(self, objectives: list[Tensor], inputs: list[Tensor]) -> Tensor:
        """(K, T, P) gradients of the objectives w.r.t. ``inputs``, keeping the graph."""
        rows = []
        for o in objectives:
            grads = (torch.autograd.grad(o.sum(), inputs, retain_graph=True, allow_unused=True)
                     if o.requires_grad else [None] * len(inputs))
            rows.append(flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, inputs,
                                                                                               strict=True)],
                                self.replicas))
        return torch.stack(rows, dim=1).detach()

    def _jacobian(self, losses, features, scaler, inspect) -> Tensor:
        parts = []
        if callable(losses):
            first = Half(0, whole=self.samples == 1)
            parts.append(self._sample(losses(first), features, first.share, scaler))
            if self.samples == 2 and first.share is not None and first.share < 1.0:
                second = Half(1)
                parts.append(self._sample(losses(second), features, second.share, scaler))
        else:
            parts.append(self._sample(losses, features, 1.0, scaler))
        scale = 1.0 if scaler is None else float(scaler.get_scale())
        if len(parts) == 1 and parts[0]["share"] != 1.0:
            parts[0]["share"] = 1.0  # a closure that did not cut its batch: the whole batch's Jacobian
        jacobian = sum(p["jacobian"] for p in parts)  # (K, T, P): the batch's
        if self.samples == 2:
            first, second = parts[0], parts[-1]
            cross = torch.einsum("ktp,ksp->kts", first["jacobian"], second["jacobian"]) / (
                first["share"] * second["share"])
        else:
            cross = gramian(jacobian)  # (K, T, T)
        raw = sum(p["share"] * p["raw"] for p in parts)  # (K, T)
        step_losses = sum(p["share"] * p["scaled"] for p in parts)
        factor = sum(p["share"] * p["factor"] for p in parts)
        bad = ~(torch.isfinite(jacobian).all(2).all(1) & torch.isfinite(cross).all(2).all(1)).cpu()
        bad |= ~self._finite_losses(raw)
        if scaler is not None and bool(bad.any()):
            bad = torch.ones_like(bad)  # the scaler skips the whole step
        self._record(raw, step_losses.detach(), bad)
        representation = parts[0]["features"]
        if bool(bad.all()):
            if scaler is not None:  # let the scaler see the overflow: it skips the step and lowers its scale
                self._write(jacobian.sum(1) * scale, representation)
                for part in parts:
                    self._accumulate(part["owned"], None)
            return bad
        snapshot = None
        if bool(bad.any()):  # some replicas: aggregate a good replica's copy in their place, then restore them
            good = int((~bad).nonzero()[0, 0])
            keep = (~bad).to(jacobian.device)[:, None, None]
            jacobian = torch.where(keep, jacobian, jacobian[good : good + 1])
            cross = torch.where(keep, cross, cross[good : good + 1])
            snapshot = self._snapshot(bad)
        update, weights = self.method.aggregate(jacobian, cross)  # (K, P), (K, T)
        if snapshot is not None:
            self._restore(snapshot, bad)
            update = torch.where((~bad).to(update.device)[:, None], update, torch.zeros_like(update))
        self.last_jacobian = jacobian
        self.last_gramian = cross if self.samples == 1 else (gramian(jacobian) if self.diagnose else None)
        if inspect is not None:
            inspect(jacobian, cross, representation)
        self._write(update * scale, representation)
        for part in parts:
            self._accumulate(part["owned"], bad if bool(bad.any()) else None)
        self._set_weights(weights.detach() * factor.detach() * self.static.to(weights), bad)
        return bad

    def _sample(self, out, features: Tensor | None, share: float | None, scaler: Any) -> dict[str, Any]:
        """One sample's task Jacobian (times its share of the batch) and its task-owned gradients (not yet written)."""
        if isinstance(out, tuple):
            out, features = out
        share = 1.0 if share is None else share
        raw = self._stack(out)
        self._ensure_device(raw)
        scaled = self._scaled(raw)
        objectives, factor = self.method.task_objectives(torch.stack(scaled, dim=1))  # (K, T) each
        objectives = [o * share if s.requires_grad else o.detach()
                      for o, s in zip(objectives.unbind(1), scaled, strict=True)]
        for_grad = objectives if scaler is None else [scaler.scale(o) for o in objectives]
        if self.representation:
            if features is None:
                raise MtlabError(f"{self.name} with gradients='representation' balances the gradients of the shared "
                                 "representation: pass backward(losses, features=<the tensor the task heads read>)")
            inputs = [features]
        else:
            inputs = self.shared
        own = list(self.method.parameters())
        last = max((t for t, o in enumerate(for_grad) if o.requires_grad), default=-1)
        rows, owned = [], []
        for t, o in enumerate(for_grad):
            mine = (self.task_parameters[self.tasks[t]] if self.task_parameters is not None
                    else _leaves(o, inputs, own)) + own
            wanted = inputs + mine
            if o.requires_grad:
                grads = torch.autograd.grad(o.sum(), wanted, retain_graph=self.representation or t < last,
                                            allow_unused=True)
            else:
                grads = (None,) * len(wanted)
            rows.append(flatten([g if g is not None else torch.zeros_like(p)
                                 for g, p in zip(grads[: len(inputs)], inputs, strict=True)], self.replicas))
            owned.append(list(zip(mine, grads[len(inputs) :], strict=True)))
        jacobian = torch.stack(rows, dim=1)
        scale = 1.0 if scaler is None else float(scaler.get_scale())
        jacobian = jacobian.to(torch.promote_types(jacobian.dtype, torch.float32)) / scale
        return {"share": share, "raw": raw.detach(), "scaled": torch.stack(scaled, dim=1).detach(),
                "factor": factor.detach(), "jacobian": jacobian, "owned": owned, "features": features}

    def _write(self, update: Tensor, representation: Tensor | None) -> None:
        """The combined update (K, P): down the trunk from the representation, or into the shared ``.grad``."""
        if self.representation:
            representation.backward(update.view_as(representation).to(representation.dtype))
            return
        offset = 0
        for p in self.shared:
            n = p.numel() // self.replicas
            _accumulate(p, update[:, offset : offset + n].reshape(p.shape))
            offset += n

    def _accumulate(self, owned: list[list[tuple[Tensor, Tensor | None]]], bad: Tensor | None) -> None:
        for task in owned:
            for p, g in task:
                if g is None:
                    continue
                if bad is not None:  # the skipped replicas' rows (stacked leaves, (K, ...)) get nothing
                    g = torch.where(bad.to(g.device).view(-1, *([1] * (g.dim() - 1))), torch.zeros_like(g), g)
                _accumulate(p, g)

    def _set_weights(self, weights: Tensor, bad: Tensor) -> None:
        if self.last_weights is None or not bool(bad.any()):
            self.last_weights = weights
        else:
            self.last_weights = torch.where(bad.to(weights.device)[:, None], self.last_weights.to(weights), weights)

    # -------------------------------------------------------------------------------- leaving state untouched

    def _snapshot(self, rows: Tensor) -> dict[str, Any]:
        return {
            "state": {k: v.detach().clone() for k, v in self.method.state_dict().items()},
            "generators": [g.get_state() if g is not None else None for g in self.method.generators],
            "rows": rows.clone(),
        }

    def _restore(self, snapshot: dict[str, Any], rows: Tensor) -> None:
        """Replica rows ``rows`` (K,) of the method's state back to the snapshot's (a buffer that changed shape, sized
        at the first step, goes back whole when every replica is restored)."""
        if not bool(rows.any()):
            return
        current = self.method.state_dict(keep_vars=True)
        with torch.no_grad():
            for key, saved in snapshot["state"].items():
                target = current[key]
                if target.shape != saved.shape:
                    if bool(rows.all()) and key in self.method._buffers:
                        self.method._buffers[key] = saved
                    continue
                mask = rows.to(target.device).view(-1, *([1] * (target.dim() - 1)))
                target.copy_(torch.where(mask, saved, target))
        for k, (g, state) in enumerate(zip(self.method.generators, snapshot["generators"], strict=True)):
            if g is not None and bool(rows[k]):
                g.set_state(state)

    def _finite_state(self) -> Tensor:
        """(K,) on the CPU: every floating tensor of the method's state is finite in replica k's row."""
        finite = torch.ones(self.replicas, dtype=torch.bool)
        for v in self.method.state_dict().values():
            if v.is_floating_point() and v.dim() > 0 and v.shape[0] == self.replicas:
                finite &= torch.isfinite(v.detach()).reshape(self.replicas, -1).all(1).cpu()
        return finite

    def _guarded(self, bad: Tensor, call: Callable[[], None]) -> None:
        """``call`` a hook, leaving the rows of ``bad`` replicas untouched (and not calling it when all are)."""
        if bool(bad.all()):
            return
        snapshot = self._snapshot(bad) if bool(bad.any()) else None
        call()
        if snapshot is not None:
            self._restore(snapshot, bad)


def _accumulate(p: Tensor, value: Tensor) -> None:
    """``p.grad += value`` as autograd accumulates: a new gradient in ``p``'s dtype and memory layout (fused
    optimisers read a gradient in its parameter's layout)."""
    if p.grad is None:
        p.grad = torch.empty_like(p).copy_(value)
    else:
        p.grad += value.to(p.grad.dtype)


def _overrides(method: WeightingMethod, hook: str) -> bool:
    """Whether the method has a hook of its own (a method's hooks are the base's no-ops unless it overrides them)."""
    default = getattr(WeightingMethod, hook, None)
    return default is not None and getattr(type(method), hook) is not default


def _leaves(root: Tensor, stop: list[Tensor], exclude: list[Tensor]) -> list[Tensor]:
    """The leaf tensors requiring grad that ``root`` reaches without passing through ``stop`` (the shared parameters
    or representation), as TorchJD's ``mtl_backward`` finds each task's parameters."""
    stop_ids = {id(t) for t in [*stop, *exclude]}
    stop_nodes = {t.grad_fn for t in stop if t.grad_fn is not None}
    found, seen, todo = [], set(), [root.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen or node in stop_nodes:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            if id(variable) not in stop_ids:
                found.append(variable)
            continue
        todo.extend(n for n, _ in node.next_functions)
    return found
