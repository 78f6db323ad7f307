"""PCA analysis: agreement with a direct SVD, component counts, confidence ellipses, and the command end to end."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from conftest import require_shared_data
from mtlab.analysis.pca import (
    class_ellipse,
    components_for,
    fit_pca,
    load_for_analysis,
    pixel_matrix,
    subset_split,
)
from mtlab.cli.analyze.pca import add_cli
from mtlab.errors import ConfigError


def test_pca_matches_a_direct_svd_on_real_mnist():
    require_shared_data()
    data = load_for_analysis("mnist")
    x = pixel_matrix(subset_split(data.train, "digit", 1500, seed=0))  # (1500, 784) in [0, 1]
    assert x.shape == (1500, 784)
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    fit = fit_pca(x)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    expected = singular**2 / np.sum(singular**2)
    np.testing.assert_allclose(fit.ratios[:100], expected[:100], rtol=1e-8, atol=1e-12)
    assert fit.ratios.sum() == pytest.approx(1.0)
    # Same axes up to sign, and projections are the centred data times the axes.
    for k in range(2):
        assert abs(fit.axes[k] @ vt[k]) == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(np.abs(fit.project(x)), np.abs(centred @ vt[:2].T), atol=1e-8)


def test_components_for_counts_the_fewest_leading_components():
    ratios = np.array([0.5, 0.3, 0.15, 0.04, 0.01])
    assert components_for(ratios, 0.5) == 1
    assert components_for(ratios, 0.9) == 3
    assert components_for(ratios, 0.95) == 3  # 0.5 + 0.3 + 0.15 is 0.95 up to rounding
    assert components_for(ratios, 0.99) == 4
    assert components_for(ratios, 1.0) == 5


def test_class_ellipse_holds_95_percent_of_a_gaussian():
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.2], [1.2, 1.0]])
    points = rng.multivariate_normal([1.0, -2.0], cov, size=20000)
    e = class_ellipse(points)
    assert e.center == pytest.approx((1.0, -2.0), abs=0.05)
    # Inside: Mahalanobis distance^2 under the fitted covariance <= chi2_2(0.95).
    s = np.array([[e.covariance[0], e.covariance[1]], [e.covariance[1], e.covariance[2]]])
    d = points - np.array(e.center)
    inside = np.einsum("ni,ij,nj->n", d, np.linalg.inv(s), d) <= -2 * math.log(0.05)
    assert inside.mean() == pytest.approx(0.95, abs=0.005)
    eigenvalues = np.linalg.eigvalsh(cov)
    assert e.width == pytest.approx(2 * math.sqrt(-2 * math.log(0.05) * eigenvalues[1]), rel=0.03)
    assert e.height == pytest.approx(2 * math.sqrt(-2 * math.log(0.05) * eigenvalues[0]), rel=0.03)


def run_command(*argv):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["pca", *argv])
    return args.func(args)


def test_pca_command_writes_figures_numbers_and_page(tmp_path):
    require_shared_data()
    out = tmp_path / "pca"
    assert run_command("--dataset", "mnist", "--subset", "2000", "--out", str(out)) == 0
    summary = json.loads((out / "pca.json").read_text())
    assert summary["train"] == 2000
    counts = summary["components_for"]
    assert 0 < counts["0.90"] < counts["0.95"] < counts["0.99"] <= 784
    assert 0.08 < summary["first_ratios"][0] < 0.12  # about 0.10 on the full set
    lines = (out / "explained-variance.csv").read_text().splitlines()
    assert lines[0] == "component,ratio,cumulative"
    assert len(lines) == 1 + 784
    assert len((out / "projection-train.csv").read_text().splitlines()) == 1 + 2000
    assert len((out / "projection-test.csv").read_text().splitlines()) == 1 + 10000
    assert len((out / "ellipses.csv").read_text().splitlines()) == 1 + 2 * 10
    for name in ("explained-variance", "scatter-train", "scatter-test"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert f"{counts['0.95']} components" in html


def test_pca_command_colours_by_another_task(tmp_path):
    # The embedded Fashion-MNIST sample needs no data directory.
    out = tmp_path / "fashion"
    assert run_command("--dataset", "fashion-mnist-sample", "--task", "group", "--out", str(out)) == 0
    assert json.loads((out / "pca.json").read_text())["task"] == "group"
    assert len((out / "ellipses.csv").read_text().splitlines()) == 1 + 2 * 3


def test_pca_rejects_an_unknown_task(tmp_path):
    require_shared_data()
    with pytest.raises(ConfigError, match="--task: mnist has no task 'item'"):
        run_command("--dataset", "mnist", "--task", "item", "--out", str(tmp_path))
