"""Every mtlab weighting method in a Lightning ``LightningModule`` (``pip install 'mtlab[lightning]'``): a
module that returns its task losses trains with any method, under Lightning's manual optimisation.

    class TwoTasks(mtlab.lightning.MTLModule):
        def __init__(self, method):
            super().__init__()
            self.method = method
            self.net = Net()

        def configure_weighting(self, steps_per_epoch, epochs):     # built when Lightning knows the run's length
            return mtlab.Weighting(self.method, tasks=["item", "group"], shared=self.net.trunk.parameters(),
                                   steps_per_epoch=steps_per_epoch, epochs=epochs)

        def task_losses(self, batch):                               # {task: scalar loss}
            x, y = batch
            out = self.net(x)
            return {t: F.cross_entropy(out[t], y[t]) for t in out}

        def configure_optimizers(self):
            return torch.optim.Adam([*self.net.parameters(), *self.weighting.parameters()], lr=1e-3)

    lightning.Trainer(max_steps=200).fit(TwoTasks("famo"), loader)

:class:`WeightingMixin` supplies ``training_step``: it runs each hook of the method (:class:`mtlab.Weighting`) where
Lightning's loop has its place - Auto-Lambda's look-ahead on a :meth:`~WeightingMixin.meta_batch` before the step,
double sampling (MoDo, SDMGrad) through :meth:`~WeightingMixin.split_batch`, the after-step hook (FAMO's losses of
the updated model) after ``optimizer.step()``, the end-of-epoch hook (DWA, STCH) after an epoch's last batch - and
steps the optimiser of ``configure_optimizers`` and its schedulers (``interval`` "step" or "epoch"). It logs
``loss/<task>``, ``weight/<task>`` and the method's diagnostics (``diagnostics/<key>``) through ``self.log``, and the
method's state travels in Lightning's own checkpoints (``on_save_checkpoint`` / ``on_load_checkpoint``), so a run
resumed with ``ckpt_path=`` continues as an uninterrupted one.

With 16-bit mixed precision the trainer's ``GradScaler`` scales the losses the object differentiates, as
``manual_backward`` would; a step whose gradients are not finite leaves the method's state untouched
(``diagnostics/skipped_steps``). One process only: the object takes the task gradients with ``torch.autograd.grad``,
which a distributed strategy's gradient synchronisation does not see, so a multi-process strategy is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtlab.errors import MtlabError
from mtlab.train.weighting import Half, Weighting

try:
    import lightning.pytorch as pl
    from lightning_utilities.core.apply_func import apply_to_collection
except ImportError:
    raise MtlabError("mtlab.lightning needs the lightning package: pip install 'mtlab[lightning]'") from None

__all__ = ["MTLModule", "WeightingMixin"]

CHECKPOINT_KEY = "mtlab_weighting"  # the method's state in a Lightning checkpoint


class WeightingMixin:
    """Trains a ``LightningModule`` with an mtlab weighting method: put it before ``LightningModule`` in the bases
    (``class M(WeightingMixin, LightningModule)``, or subclass :class:`MTLModule`) and define

    * :meth:`task_losses` ``(batch) -> {task: scalar loss}``;
    * the method: ``self.weighting = mtlab.Weighting(...)`` in ``__init__``, or :meth:`configure_weighting`
      ``(steps_per_epoch, epochs)`` for a method that needs the run's length (DWA, STCH, a planned schedule);
    * ``configure_optimizers`` with ``self.weighting.parameters()`` in the optimiser (uncertainty, IMTL, GradNorm);
    * :meth:`meta_batch` for a method that looks ahead on another batch (Auto-Lambda).

    A hook of Lightning's the mixin defines (``training_step``, ``on_fit_start``, ``on_train_epoch_end``,
    ``on_save_checkpoint``, ``on_load_checkpoint``) must call ``super()`` when overridden.
    """

    log_diagnostics: bool = True  # log weighting.diagnostics() every step as diagnostics/<key>

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False  # the weighting writes the gradients; training_step steps the optimiser

    # ------------------------------------------------------------------------------------------ what users define

    def task_losses(self, batch: Any) -> Mapping[str, Tensor]:
        """The task losses of the model on ``batch``, ``{task: scalar}`` (called with a half of the batch under
        double sampling, and without gradient for FAMO's losses after the step)."""
        raise NotImplementedError(f"{type(self).__name__} must define task_losses(self, batch) -> {{task: loss}}")

    def configure_weighting(self, steps_per_epoch: int, epochs: int) -> Weighting:
        """The weighting object, built on first use of ``self.weighting`` (in ``configure_optimizers``), once the
        trainer knows the batches in an epoch and the run's epochs (from ``max_epochs`` / ``max_steps``)."""
        raise MtlabError(f"{type(self).__name__} has no weighting method: set self.weighting = mtlab.Weighting(...) "
                         "in __init__, or define configure_weighting(self, steps_per_epoch, epochs)")

    def meta_batch(self, batch: Any, batch_idx: int) -> Any:
        """Another batch of the training data for a method's look-ahead (Auto-Lambda); None: there is none."""
        return None

    def split_batch(self, batch: Any, half: Half) -> Any:
        """``half`` of ``batch`` for double sampling (MoDo, SDMGrad): every tensor in it cut along its first
        dimension. Override for a batch whose examples lie along another dimension."""
        return apply_to_collection(batch, Tensor, half)

    # ------------------------------------------------------------------------------------------ the method

    @property
    def weighting(self) -> Weighting:
        found = self.__dict__.get("_mtlab_weighting")
        if found is None:
            found = self.configure_weighting(*self._run_length())
            if not isinstance(found, Weighting):
                raise MtlabError(f"{type(self).__name__}.configure_weighting must return an mtlab.Weighting, got "
                                 f"{type(found).__name__}")
            self.weighting = found
        return found

    @weighting.setter
    def weighting(self, value: Weighting) -> None:
        self.__dict__["_mtlab_weighting"] = value
        pending = self.__dict__.pop("_mtlab_pending_state", None)
        if pending is not None:  # a checkpoint read before the method was built
            _load(value, pending)

    def _run_length(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer.train_dataloader is None:  # as trainer.estimated_stepping_batches loads it (even for max_steps)
            trainer.fit_loop.setup_data()
        steps = trainer.num_training_batches
        if not math.isfinite(steps) or steps < 1:
            raise MtlabError(f"{type(self).__name__}: the weighting needs the batches in an epoch, and the train "
                             "dataloader has no length: build mtlab.Weighting yourself with steps_per_epoch=")
        epochs = [e for e in (trainer.max_epochs,) if e is not None and e > 0]
        if trainer.max_steps is not None and trainer.max_steps > 0:
            epochs.append(-(-trainer.max_steps // int(steps)))
        if not epochs:
            raise MtlabError(f"{type(self).__name__}: the weighting needs the run's length: give the Trainer "
                             "max_epochs or max_steps")
        return int(steps), min(epochs)

    # ------------------------------------------------------------------------------------------ Lightning's hooks

    def on_fit_start(self) -> None:
        super().on_fit_start()
        name = type(self).__name__
        if self.automatic_optimization:
            raise MtlabError(f"{name}: the weighting steps the optimiser itself: keep self.automatic_optimization = "
                             "False (WeightingMixin.__init__ sets it)")
        if self.trainer.world_size > 1:
            raise MtlabError(f"{name}: mtlab.lightning trains in one process (the task gradients are taken with "
                             "torch.autograd.grad, which distributed gradient synchronisation does not see): use "
                             "one device")
        w = self.weighting
        optimizer = self._optimizer()
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if any(id(p) not in held for p in w.parameters()):
            raise MtlabError(f"{name}: {w.name} learns parameters of its own: give self.weighting.parameters() to "
                             "the optimiser in configure_optimizers")
        if w.needs_meta_batch and type(self).meta_batch is WeightingMixin.meta_batch:
            raise MtlabError(f"{name}: {w.name} looks ahead on a meta batch before each step: define "
                             "meta_batch(self, batch, batch_idx) returning another batch of the training data")
        for config in self.trainer.lr_scheduler_configs:
            if config.reduce_on_plateau:
                raise MtlabError(f"{name}: ReduceLROnPlateau needs a monitored value: step it yourself in "
                                 "on_validation_epoch_end, and leave it out of configure_optimizers")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        w = self.weighting
        optimizer = self._optimizer()
        if w.needs_meta_batch:
            meta = self.meta_batch(batch, batch_idx)
            if meta is None:
                raise MtlabError(f"{type(self).__name__}: {w.name} needs a meta batch at batch {batch_idx}: "
                                 "meta_batch(batch, batch_idx) returned None")
            w.look_ahead(self, optimizer, self.task_losses, batch, meta)
        optimizer.zero_grad()
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # 16-mixed: the losses are scaled
        seen: list[tuple[float, dict[str, Tensor]]] = []

        def closure(half: Half) -> Mapping[str, Tensor]:
            losses = self.task_losses(self.split_batch(batch, half))
            seen.append((half.share if half.share is not None else 1.0, {t: v.detach() for t, v in losses.items()}))
            return losses

        if w.samples == 2:
            applied = w.backward(closure, scaler=scaler)
        else:
            applied = w.backward(closure(Half(0, whole=True)), scaler=scaler)
        if applied or scaler is not None:
            self.optimizers().step()  # a skipped step under a scaler: its non-finite gradient lowers the scale
            self._step_schedulers("step")
        if w.has_after_step:
            if w.needs_losses_after_step:
                with torch.no_grad():
                    w.after_step(self.task_losses(batch))
            else:
                w.after_step()
        if w.has_end_epoch and batch_idx + 1 == self.trainer.num_training_batches:
            w.end_epoch()  # here, not only in on_train_epoch_end: a checkpoint after this batch sees the new epoch
        losses = {t: sum(share * step[t] for share, step in seen) for t in w.tasks}
        self._log_step(losses, _batch_size(batch))
        return sum(losses.values())

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.weighting.end_epoch()  # an epoch cut short (a no-op when the last batch ended it)
        self._step_schedulers("epoch")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        w = self.weighting
        checkpoint[CHECKPOINT_KEY] = {"method": w.name, "tasks": list(w.tasks), "state": w.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            raise MtlabError(f"{type(self).__name__}: the checkpoint holds no weighting state (key "
                             f"{CHECKPOINT_KEY!r}): it was not saved by a module with mtlab's WeightingMixin")
        if "_mtlab_weighting" in self.__dict__:
            _load(self.weighting, saved)
        else:
            self.__dict__["_mtlab_pending_state"] = saved  # loaded when configure_weighting builds the method

    # ------------------------------------------------------------------------------------------ inside

    def _optimizer(self) -> torch.optim.Optimizer:
        optimizers = self.optimizers(use_pl_optimizer=False)
        if isinstance(optimizers, list):
            if len(optimizers) != 1:
                raise MtlabError(f"{type(self).__name__}: one optimiser holding the model's and the weighting's "
                                 f"parameters, got {len(optimizers)} from configure_optimizers")
            optimizers = optimizers[0]
        return optimizers

    def _step_schedulers(self, interval: str) -> None:
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval:
                continue
            done = self.trainer.global_step if interval == "step" else self.trainer.current_epoch + 1
            if done % config.frequency == 0:
                config.scheduler.step()

    def _log_step(self, losses: dict[str, Tensor], batch_size: int) -> None:
        w = self.weighting
        values: dict[str, Any] = {f"loss/{t}": v for t, v in losses.items()}
        values.update({f"weight/{t}": float(v) for t, v in w.weights().items()})
        if self.log_diagnostics:
            values.update({f"diagnostics/{k}": float(v) for k, v in w.diagnostics().items()})
        self.log_dict(values, on_step=True, on_epoch=False, batch_size=batch_size or None)


class MTLModule(WeightingMixin, pl.LightningModule):
    """A ``LightningModule`` trained with an mtlab weighting method (:class:`WeightingMixin`)."""


def _load(weighting: Weighting, saved: Mapping[str, Any]) -> None:
    if saved["method"] != weighting.name or list(saved["tasks"]) != list(weighting.tasks):
        raise MtlabError(f"the checkpoint's weighting is {saved['method']} on tasks {list(saved['tasks'])}; this "
                         f"module trains {weighting.name} on {list(weighting.tasks)}: resume with the same method and "
                         "tasks")
    weighting.load_state_dict(saved["state"])


def _batch_size(batch: Any) -> int:
    """The examples in ``batch``: the first dimension of its first tensor (0 when it holds none)."""
    sizes: list[int] = []
    apply_to_collection(batch, Tensor, lambda t: sizes.append(t.shape[0] if t.dim() else 1))
    return sizes[0] if sizes else 0
