"""What a result was computed with: versions, machine, git commit - stored with every run so it can be reproduced."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

import mtlab

_PACKAGES = ("torch", "numpy", "pydantic", "pyyaml")


def git_sha(where: Path | None = None) -> str | None:
    """The commit checked out at ``where`` (default: mtlab's own source tree), with ``+dirty`` if modified."""
    where = where or Path(mtlab.__file__).resolve().parent
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
    versions = {"python": sys.version.split()[0], "mtlab": mtlab.__version__}
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
