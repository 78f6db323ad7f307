"""Device choice: ``auto`` takes CUDA, then Apple MPS, then the CPU; an explicit device must exist."""

from __future__ import annotations

import torch

from mtlab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but torch sees no CUDA device (use auto or cpu)")
    if name == "mps" and not _mps_available():
        raise ConfigError("train.device: 'mps' requested but this torch build or machine has no MPS (use auto)")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
