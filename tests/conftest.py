"""Point mtlab's data resolution at the repository's sibling ``shared/data`` (real MNIST and Fashion-MNIST); one
deterministic Hypothesis profile; ``built_once`` for tiny runs shared by the xdist workers (tests/README.md)."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

from demo_plugins import load_demo_plugins

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n auto` starts one worker per core: torch (imported later, by the test modules) and the processes the
    # tests start use one thread each, instead of every worker's threads fighting over every core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Property tests draw the same examples on every run and every worker (no example database, which would replay a
# previous run's failures and is one file shared by the xdist workers); a test's own @settings add to these.
settings.register_profile("mtlab", derandomize=True, database=None)
settings.load_profile("mtlab")

# The outside package's trunk, model kind, executor and tracker join mtlab's own before any test assembles the config
# schema, so every test parametrised over a registry covers them too.
load_demo_plugins()

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def pytest_collection_modifyitems(config, items):
    """In xdist workers (whose collections the controller hands out in order), the slow tests come first: the
    longest start early and the short ones fill in at the end, instead of a long test starting last."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each tier


def _test_environment(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("MTLAB_DATA", str(SHARED_DATA))
    else:
        monkeypatch.delenv("MTLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("MTLAB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _data_from_shared(monkeypatch, tmp_path_factory):
    """Tests find real data only through ``MTLAB_DATA``; the user cache is a fresh temporary directory and
    downloads are off unless a test turns them on, so no test touches the network or the user's home."""
    _test_environment(monkeypatch, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def built_once(tmp_path_factory) -> Callable[[str, Callable[[Path], object]], object]:
    """``built_once(name, make)``: ``make(directory)`` runs once in the whole session - whichever xdist worker asks
    first builds while the others wait - and every caller gets its return value (pickled beside the directory).

    For the tiny trained runs and studies many tests inspect: the directory is shared by every worker, so tests
    only read it (a test that changes it works on a copy). ``make`` runs in the tests' environment (``MTLAB_DATA``,
    an empty cache, offline). ``name`` must be unique in the suite: use the module's name in it.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)

    def build(name: str, make: Callable[[Path], object]):
        directory, value = root / name, root / f"{name}.pickle"
        with FileLock(root / f"{name}.lock"):
            if not value.exists():
                shutil.rmtree(directory, ignore_errors=True)  # what a failed build left
                directory.mkdir(parents=True)
                with pytest.MonkeyPatch.context() as env:
                    _test_environment(env, root / f"{name}.cache")
                    made = make(directory)
                value.write_bytes(pickle.dumps(made))
            return pickle.loads(value.read_bytes())

    return build


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


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: small convolutions on big images run fastest so, and far faster than on
    several threads of a shared machine. Used by the modules that set ``pytestmark`` to it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
