"""What a result was computed with: versions, machine, git commit - stored with every run so it can be reproduced."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from mtlab.version import __version__

_PACKAGES = ("torch", "numpy", "pydantic", "pyyaml")


def git_sha(where: Path | None = None) -> str | None:
    """The commit checked out at ``where`` (default: mtlab's own source tree), with ``+dirty`` if modified."""
    where = where or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def describe(device: torch.device | str | None = None) -> dict[str, object]:
    """A JSON-ready description of the software and machine."""
    versions = {"python": sys.version.split()[0], "mtlab": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "cuda": torch.version.cuda,
        "git_sha": git_sha(),
    }


# The CPU features that decide how fast torch trains on a CPU (vector width, fused multiply-add, bf16 and int8 units):
# the flags a reader compares, out of the hundred /proc/cpuinfo lists.
SPEED_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimd",
               "sve")  # fmt: skip


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform says)."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or None


def cpu_flags() -> list[str]:
    """Which of :data:`SPEED_FLAGS` the CPU has (empty where ``/proc/cpuinfo`` does not say)."""
    present = set((_cpuinfo().get("flags") or _cpuinfo().get("Features") or "").split())
    return [flag for flag in SPEED_FLAGS if flag in present]


def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def timing_context(executor: dict[str, object]) -> dict[str, object]:
    """What timings measured from now on depend on, for the report beside them: the CPU (model, speed flags, the
    vector code torch picked), how many cores this process may use, torch threads, the executor's workers and
    threads, and the load average (1, 5, 15 min) when training started - other work on the machine slows every run.
    Times taken on different machines, or under different load, are not comparable."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not available on this platform
        load = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "executor": executor.get("executor"),
        "workers": executor.get("workers"),
        "threads_per_worker": executor.get("threads"),
        "load_average": load,
        "platform": platform.platform(),
    }
