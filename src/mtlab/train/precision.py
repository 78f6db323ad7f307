"""Mixed precision: which autocast context and gradient scaler a run gets, and a clear fallback where a device
cannot do what was asked (the run then trains in fp32 and says so once)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch


def autocast_for(precision: str, device: torch.device) -> tuple[Callable[[], AbstractContextManager], object | None]:
    """(context factory for forward + loss, ``torch.amp.GradScaler`` or None) for ``precision`` on ``device``.

    bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does (Micikevicius et al., 2018) and is
    offered on CUDA only, where its kernels are fast.
    """
    if precision == "fp32":
        return contextlib.nullcontext, None
    if precision == "bf16" and device.type in ("cpu", "cuda"):
        if device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn(
                "this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast is emulated and much "
                "slower than fp32 here (20-30x on the CIFAR-100 reference net, benchmarks/README.md); use fp32",
                RuntimeWarning,
                stacklevel=2,
            )
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), None
    if precision == "fp16" and device.type == "cuda":
        return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")
    warnings.warn(
        f"train.precision {precision} is not supported on {device.type}; training in fp32 "
        "(bf16: CPU or CUDA; fp16: CUDA)",
        RuntimeWarning,
        stacklevel=2,
    )
    return contextlib.nullcontext, None


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX512-BF16 / AMX); True where PyTorch cannot tell."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True
