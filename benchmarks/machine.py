"""What a benchmark prints beside its figures: the CPU's model and vector flags, and the load average it ran under
(the benchmarks are scripts run from the repository root; this module sits beside them on their import path)."""

from __future__ import annotations

import os
import subprocess


def cpu_summary() -> str:
    """The CPU's model name and its AVX / AMX flags, from ``lscpu``."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "lscpu unavailable"
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    wanted = [f for f in flags if f.startswith(("avx", "amx"))]
    return f"{info.get('Model name', '?').strip()}, flags: {' '.join(wanted) or 'no AVX'}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or ``unavailable`` where the platform has none."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unavailable"
