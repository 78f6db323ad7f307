"""Where the data layer has always found :class:`~mtlab.tasks.Task`; it lives in :mod:`mtlab.tasks`."""

from __future__ import annotations

from mtlab.tasks import Task  # noqa: F401  (re-exported)
