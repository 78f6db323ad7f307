"""Every built-in study runs end to end on a tiny budget and writes its report.

CIFAR-100 cannot be downloaded here, so its study runs on a synthetic tarball in the official layout served from a
loopback HTTP server: the same download, checksum, extraction and parsing path a user with internet takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from mtlab.data.cifar100 import CIFAR100
from mtlab.data.multi_mnist import OVERLAYS
from mtlab.data.sources import SOURCES, RawFile
from mtlab.report import build_report
from mtlab.study.catalog import builtin_study_paths, find_study
from mtlab.study.runner import run_study
from mtlab.study.store import ResultStore
from test_data_resolve import bypass_proxies, serve_directory

TINY = {"data.train_subset": 200, "data.test_subset": 100, "train.epochs": 1}
# The digit studies run on the MNIST sample embedded in mtlab, so they run on any clone (the full MNIST is not needed
# for 200 training images; its loading is tested where it is found, in test_data_catalog).
ON_EMBEDDED_DIGITS = {
    "mnist-basics": {"data.dataset": "mnist-sample"},
    "mnist-pairs": {"data.digits": "mnist-sample"},
    "pairs-weighting": {"data.digits": "mnist-sample"},
}


def synthetic_cifar_tarball(directory, n_train=300, n_test=100):
    """``cifar-100-python.tar.gz`` with pickled train/test/meta in the official layout; returns the member bytes."""
    rng = np.random.default_rng(0)

    def batch(n, label):
        fine = rng.integers(0, 100, n)
        return {
            b"batch_label": label,
            b"filenames": [b"x.png"] * n,
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }

    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    members = {
        name: pickle.dumps(value, protocol=2)
        for name, value in (
            ("train", batch(n_train, b"training batch 1 of 1")),
            ("test", batch(n_test, b"testing batch 1 of 1")),
            ("meta", meta),
        )
    }
    tarball = directory / CIFAR100.archive.filename
    with tarfile.open(tarball, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return tarball, members


def tiny(name):
    spec, _ = find_study(name)
    budgets = {**spec.budgets, "quick": spec.budgets["quick"].model_copy(update={"seeds": [0]})}
    return spec.model_copy(update={"budgets": budgets})


def run_and_report(spec, directory, budget="quick"):
    result = run_study(spec, directory, budget=budget, overrides={**TINY, **ON_EMBEDDED_DIGITS.get(spec.name, {})})
    assert not result.failed, result.failed
    with ResultStore(directory / "results.sqlite") as store:
        assert set(store.statuses().values()) == {"done"}
        assert len(store.statuses()) == result.total
    paths = build_report(directory)
    assert paths["html"].stat().st_size > 1000
    assert spec.name in paths["md"].read_text()
    return result


CIFAR_STUDIES = sorted(name for name in builtin_study_paths() if name.startswith("cifar100-"))
# The papers' benchmarks (NYUv2, Cityscapes, CelebA, QM9) have no quick budget; test_paper_studies runs their tiny one.
PAPER_STUDIES = ["celeba-weighting", "cityscapes-weighting", "nyuv2-weighting", "qm9-weighting"]


@pytest.mark.slow
# fashion-frontier runs below, with its trade-off section checked; the papers' studies in test_paper_studies.py.
@pytest.mark.parametrize(
    "name", sorted(set(builtin_study_paths()) - set(CIFAR_STUDIES) - set(PAPER_STUDIES) - {"fashion-frontier"})
)
def test_builtin_study_runs_on_a_tiny_budget(name, tmp_path):
    spec = tiny(name)
    dataset = spec.budgets["quick"].set.get("data.dataset", spec.base.get("data", {}).get("dataset"))
    missing = [s for s in OVERLAYS.get(dataset, ()) if s not in SOURCES]
    if missing:
        pytest.skip(f"the quick budget of {name} uses {dataset}, built from {missing[0]}, which this build lacks")
    result = run_and_report(spec, tmp_path / name)
    assert result.trained == result.total


@pytest.mark.slow
def test_multi_mnist_study_runs_its_multifashion_budget(tmp_path):
    """The multi-mnist study on composites of the embedded Fashion-MNIST sample: every weighting method trains."""
    from mtlab.weighting import registered_methods

    spec, _ = find_study("multi-mnist")
    budgets = {**spec.budgets, "fashion-quick": spec.budgets["fashion-quick"].model_copy(update={"seeds": [0]})}
    result = run_and_report(spec.model_copy(update={"budgets": budgets}), tmp_path / "mm", budget="fashion-quick")
    assert result.trained == result.total == len(registered_methods()) + 2  # every method and the two singles


def test_multi_mnist_study_compares_every_registered_weighting_method():
    from mtlab.study.spec import expand
    from mtlab.weighting import registered_methods

    spec, _ = find_study("multi-mnist")
    runs = expand(spec, "quick")
    shared = [r for r in runs if r.variant.startswith("shared, ")]
    assert [r.config.loss.method for r in shared if r.seed == 0] == registered_methods()  # the set, expanded
    control = next(r for r in runs if r.variant == spec.control.variant[0])  # the first the budget runs
    assert control.config.loss.method == "fixed"
    assert {"single left", "single right"} <= set(spec.variants)


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR_STUDIES)
def test_cifar100_study_downloads_verifies_and_runs(name, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    tarball, members = synthetic_cifar_tarball(served)
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    monkeypatch.delenv("MTLAB_OFFLINE")
    bypass_proxies(monkeypatch)
    with serve_directory(served) as url:
        # The official catalogue entry, with the synthetic files' md5s and the loopback server as the only mirror.
        source = dataclasses.replace(
            CIFAR100,
            files=tuple(RawFile(n, hashlib.md5(c).hexdigest(), "md5") for n, c in members.items()),
            archive=dataclasses.replace(
                CIFAR100.archive, urls=(url + tarball.name,), md5=hashlib.md5(tarball.read_bytes()).hexdigest()
            ),
        )
        monkeypatch.setitem(SOURCES, "cifar100", source)
        run_and_report(tiny(name), tmp_path / "cifar")


@pytest.mark.parametrize("name", ["fashion-weighting", "pairs-weighting", "morpho-weighting"])
def test_weighting_studies_train_every_registered_method_against_fixed(name):
    from mtlab.study.controls import resolve_controls
    from mtlab.study.spec import expand
    from mtlab.weighting import registered_methods

    spec, _ = find_study(name)
    for budget in spec.budgets:
        runs = expand(spec, budget)
        methods = [r.config.loss.method for r in runs if len(r.config.task_names) > 1]
        assert set(methods) == set(registered_methods()), "the study's method set expands to every method"
        assert all(r.config.train.diagnostics is not None for r in runs)
    runs = expand(spec, "quick")
    controls = resolve_controls(spec, runs)
    (fixed,) = {c for per_task in controls.values() for c in per_task.values()}
    control_run = next(r for r in runs if r.variant == fixed)
    assert control_run.config.loss.method == "fixed"
    expected = {"leq": 0.5, "digit_a": 0.25, "digit_b": 0.25} if name == "pairs-weighting" else {}
    assert control_run.config.loss.weights == expected
    assert len(controls) == len({r.variant for r in runs}) - 1  # every other variant is compared with it


def test_fashion_frontier_places_every_method_against_a_static_sweep_over_the_simplex():
    from mtlab.study.controls import resolve_controls
    from mtlab.study.spec import expand
    from mtlab.weighting import registered_methods

    spec, _ = find_study("fashion-frontier")
    runs = expand(spec, "quick")
    assert {r.config.data.dataset for r in runs} == {"fashion-mnist-sample"}
    assert len({r.seed for r in runs}) == 3
    assert {r.config.loss.method for r in runs} == set(registered_methods()), "the adaptive set expands to every method"
    static = [r for r in runs if r.variant.startswith("static")]
    assert {r.config.loss.method for r in static} == {"fixed"}
    weights = {tuple(r.config.loss.weights[t] for t in ("item", "group")) for r in static}
    assert len(weights) >= 7
    assert all(sum(w) == pytest.approx(1.0) and min(w) > 0 for w in weights)  # on the simplex, both tasks trained
    controls = resolve_controls(spec, runs)
    assert {c for per_task in controls.values() for c in per_task.values()} == {"static, lambda=0.5"}


@pytest.mark.slow
def test_fashion_frontier_runs_on_a_tiny_budget_and_reports_its_trade_offs(tmp_path):
    from mtlab.study.spec import expand
    from mtlab.weighting import registered_methods

    spec = tiny("fashion-frontier")
    result = run_and_report(spec, tmp_path / "frontier")
    assert result.trained == result.total == len(expand(spec, "quick"))
    report = (tmp_path / "frontier" / "report.md").read_text()
    section = report.split("## Trade-offs", 1)[1].split("\n## ", 1)[0]
    assert "reference point item test acc" in section
    assert "static sweep" in section
    for name in registered_methods():
        assert f"adaptive, {name}" in section or name == "fixed"
    assert "behind the static front" in section or "beyond the static front" in section
    assert (tmp_path / "frontier" / "figures" / "trade-off.png").is_file()
