"""The old import path of :mod:`mtlab.execute` (executors moved there, a layer below studies and searches), kept so
that an outside executor plug-in written against it - ``from mtlab.study.executors import EXECUTORS`` or
``from mtlab.study.executors.local import LocalExecutor`` - keeps loading. New code imports :mod:`mtlab.execute`."""

from __future__ import annotations

import sys

from mtlab import execute
from mtlab.execute import local, processes, ray_tasks, work

for _module in (local, processes, ray_tasks, work):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
sys.modules[__name__] = execute
