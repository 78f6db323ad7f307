"""Point mtlab's data resolution at the repository's sibling ``shared/data`` (real MNIST and Fashion-MNIST)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from demo_plugins import load_demo_plugins

# The outside package's trunk, model kind, executor and tracker join mtlab's own before any test assembles the config
# schema, so every test parametrised over a registry covers them too.
load_demo_plugins()

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _data_from_shared(monkeypatch, tmp_path_factory):
    """Tests find real data only through ``MTLAB_DATA``; the user cache is a fresh temporary directory and
    downloads are off unless a test turns them on, so no test touches the network or the user's home."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("MTLAB_DATA", str(SHARED_DATA))
    else:
        monkeypatch.delenv("MTLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MTLAB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test ends with the process environment it started with. ``ray.init`` sets variables of its own in
    ``os.environ`` (``RAY_AUTH_MODE=token``, its token then under the test's HOME): left behind, they reach a later
    test's ``ray start`` subprocess, which then looks for a token that is not there."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


def require_shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


os.environ.setdefault("PYTHONHASHSEED", "0")
