"""Perceptron and exact LP separability: the classic algorithm, agreement on toy sets, XOR, and the command."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from conftest import require_shared_data
from mtlab.analysis.separability import accuracy, lp_separable, perceptron
from mtlab.cli.analyze.separability import add_cli
from mtlab.errors import ConfigError


def naive_perceptron(x, y, lr, epochs, seed):
    """The textbook loop, one sample at a time, for comparison with the block-scanning implementation."""
    order = np.random.default_rng(seed).permutation(len(y))
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(epochs):
        mistakes = 0
        for i in order:
            if y[i] * (x[i] @ w + b) <= 0:
                w += lr * y[i] * x[i]
                b += lr * y[i]
                mistakes += 1
        if mistakes == 0:
            break
    return w, b


def blobs(n=200, d=5, gap=3.0, seed=0):
    """Two Gaussian clouds centred at +-gap/2 on every axis: separable (with overwhelming probability)."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    x = rng.normal(size=(n, d)) * 0.3 + y[:, None] * gap / 2
    return x, y


def xor(points_per_corner=1, seed=0):
    rng = np.random.default_rng(seed)
    corners = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([1.0, 1.0, -1.0, -1.0])
    x = np.repeat(corners, points_per_corner, axis=0) + rng.normal(scale=0.05, size=(4 * points_per_corner, 2))
    return x, np.repeat(labels, points_per_corner)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_updates_exactly_like_the_sequential_algorithm(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 8))
    y = np.where(x @ rng.normal(size=8) + 0.3 * rng.normal(size=300) > 0, 1.0, -1.0)  # noisy: not separable
    fitted = perceptron(x, y, lr=0.1, max_epochs=7, seed=seed)
    w, b = naive_perceptron(x, y, 0.1, 7, seed)
    np.testing.assert_allclose(fitted.weights, w, rtol=1e-12, atol=1e-12)
    assert fitted.bias == pytest.approx(b)
    assert len(fitted.mistakes) == fitted.epochs <= 7


def test_perceptron_converges_on_a_separable_set_and_the_lp_agrees():
    x, y = blobs()
    fitted = perceptron(x, y, lr=0.5, max_epochs=100, seed=0)
    assert fitted.converged
    assert accuracy(x, y, fitted.weights, fitted.bias) == 1.0
    verdict = lp_separable(x, y, initial=20, step=20)
    assert verdict.separable is True
    assert verdict.min_margin > 0
    assert verdict.margin > 0
    assert np.all(y * (x @ verdict.weights + verdict.bias) > 0)  # the certificate really separates


def test_learning_rate_only_rescales_the_weights():
    x, y = blobs(seed=3)
    small, large = perceptron(x, y, lr=0.004, seed=1), perceptron(x, y, lr=1.0, seed=1)
    np.testing.assert_allclose(small.weights / 0.004, large.weights, rtol=1e-9)
    assert small.epochs == large.epochs


@pytest.mark.parametrize("per_corner", [1, 40])
def test_lp_says_xor_is_not_separable(per_corner):
    x, y = xor(per_corner)
    assert lp_separable(x, y, initial=4, step=10).separable is False
    assert not perceptron(x, y, max_epochs=50).converged


def test_lp_decides_where_a_small_perceptron_budget_cannot():
    # Separable with a thin margin: one epoch is not enough for the perceptron, the LP still finds the hyperplane.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2000, 2))
    score = x[:, 0] + 0.5 * x[:, 1] - 0.1
    keep = np.abs(score) > 0.005
    x, y = x[keep], np.where(score[keep] > 0, 1.0, -1.0)
    assert not perceptron(x, y, max_epochs=1).converged
    assert lp_separable(x, y, initial=50, step=50).separable is True


def test_lp_reports_a_time_limit_as_undecided():
    x, y = blobs()
    verdict = lp_separable(x, y, time_limit=1e-9)
    assert verdict.separable is None
    assert "time limit" in verdict.message


def run_command(*argv):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["separability", *argv])
    return args.func(args)


def test_separability_command_writes_every_file(tmp_path):
    require_shared_data()
    out = tmp_path / "sep"
    assert run_command("--subset", "1000", "--max-epochs", "30", "--out", str(out)) == 0
    with (out / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 45
    assert {(int(r["a"]), int(r["b"])) for r in rows} == {(a, b) for a in range(10) for b in range(a + 1, 10)}
    for r in rows:
        # A perceptron that converged proves separability, so the LP must agree wherever it did.
        if r["perceptron_converged"] == "True":
            assert r["lp_separable"] == "True"
        assert 0.5 < float(r["test_acc"]) <= 1.0
    summary = json.loads((out / "separability.json").read_text())
    assert summary["train"] == 1000
    assert summary["lp_seconds"] > 0
    with (out / "perceptron-weights.csv").open() as f:
        header = next(csv.reader(f))
    assert len(header) == 3 + 784
    for name in ("separability-matrix", "perceptron-accuracy", "perceptron-weights"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "0 vs 1" in html


def test_separability_command_rejects_bad_numbers(tmp_path):
    with pytest.raises(ConfigError, match="--lr"):
        run_command("--lr", "0", "--out", str(tmp_path))
