"""Optimisers and per-step learning-rate schedules from :class:`~mtlab.config.schema.OptimConfig`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from mtlab.config.schema import OptimConfig

# Devices with fused (one kernel per parameter) Adam, AdamW and SGD implementations in PyTorch >= 2.4.
FUSED_DEVICES = ("cpu", "cuda", "mps")


def build_optimizer(
    config: OptimConfig, parameters: Iterable[nn.Parameter], extra: Iterable[nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """The configured optimiser, fused where PyTorch has a fused kernel for the parameters' device.

    ``extra`` parameters (a weighting method's own, such as uncertainty's log-variances) join in a second group
    with no weight decay (decaying them would pull the method towards its initial weights, which no paper does) and
    the learning rate ``method_lr`` where set (Nash-MTL's ``--method-params-lr``).
    The default (for-loop) implementation launches about ten elementwise kernels per parameter per step; on small
    models and on stacked seed replicas that was a fifth of the step time (measured in ``benchmarks/README.md``).
    The update rule is the same, elementwise per parameter, so replicas stay independent.
    """
    params = [p for p in parameters if p.requires_grad]
    extra = [p for p in extra if p.requires_grad]
    everything = params + extra
    fused = bool(everything) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in everything)
    own = {"weight_decay": 0.0} | ({"lr": config.method_lr} if config.method_lr is not None else {})
    groups = [{"params": params}] + ([{"params": extra, **own}] if extra else [])
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def build_schedule(
    config: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int = 1
) -> LRScheduler | None:
    """A scheduler stepped once per optimiser step over the planned ``total_steps`` (epochs x batches).

    cosine: from ``lr`` down to 0 (Loshchilov & Hutter, 2017, without restarts); onecycle: warm up to ``lr`` over
    ``warmup_fraction`` of the steps, then anneal (Smith & Topin, 2019); step: ``lr * step_gamma ** (epoch //
    step_epochs)`` for the steps of 0-based ``epoch`` - PyTorch's ``StepLR`` stepped once per epoch, as the MTAN,
    Nash-MTL and FAMO trainers use it (100 epochs, 0.5); with ``step_offset`` k, ``(epoch + k) // step_epochs`` (the
    drops k epochs earlier: Sener & Koltun's loop, k = 1); constant: ``lr`` throughout. None for plateau, which
    changes the rate only between epochs (:func:`build_plateau`) and must not be reset by a per-step scheduler.
    """
    if config.schedule == "plateau":
        return None
    if config.schedule == "step":
        steps = max(steps_per_epoch, 1)
        period, ahead = config.step_epochs * steps, config.step_offset * steps
        return LambdaLR(optimizer, lambda step: config.step_gamma ** ((step + ahead) // period))
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction)
    return LambdaLR(optimizer, lambda step: 1.0)


def build_plateau(config: OptimConfig, optimizer: torch.optim.Optimizer, mode: str) -> ReduceLROnPlateau | None:
    """For ``schedule: plateau``: PyTorch's ``ReduceLROnPlateau`` over every parameter group, stepped after each
    epoch with the run's ``plateau_metric`` (``mode`` its direction, "min" or "max") - the learning rate times
    ``plateau_factor`` after ``plateau_patience`` epochs without improvement, never below ``min_lr`` (PyTorch's
    default relative threshold 1e-4). Nash-MTL's and FAMO's QM9 trainers: factor 0.7, patience 5, min_lr 1e-5.
    None for the other schedules."""
    if config.schedule != "plateau":
        return None
    return ReduceLROnPlateau(
        optimizer, mode=mode, factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr
    )
