"""Named random streams: each source of randomness in a run (splits, batch order, augmentation, initialisation)
draws from its own seed, so changing one (say, the batch size) does not shift the others."""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named stream of run ``seed`` (stable across processes and Python versions)."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded for the named stream."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))
