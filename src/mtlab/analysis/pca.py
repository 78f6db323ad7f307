"""Principal component analysis of a dataset's raw pixels: how many directions hold its variance, and how its classes
sit in the plane of the first two.

PCA (Pearson, 1901; Hotelling, 1933) of the training pixels scaled to [0, 1], centred on the training mean: the
principal axes are the eigenvectors of the covariance matrix ``C = Xc^T Xc / (N - 1)`` and the explained-variance ratio
of component k is ``lambda_k / sum_j lambda_j`` (equivalently ``s_k^2 / sum_j s_j^2`` for the singular values of
``Xc``). scikit-learn's :class:`~sklearn.decomposition.PCA` computes them; the test split is projected on the
training axes, never fitted. Each class in the plane of the first two components gets the 95% ellipse of a Gaussian
with the class's mean and covariance there: ``(z - mu)^T S^-1 (z - mu) <= chi2_2(0.95) = -2 ln 0.05``.

``mtlab analyze pca --dataset mnist`` writes the curve, the two scatter plots, the numbers behind them (CSV / JSON)
and a self-contained ``report.html``; on MNIST 154 components keep 95% of the variance (the reference's number).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlab import atomic, seeding
from mtlab.errors import ConfigError, MtlabError

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset, Split

THRESHOLDS = (0.90, 0.95, 0.99)
ELLIPSE_LEVEL = 0.95


def image_datasets() -> list[str]:
    """Every registered dataset (plug-ins too) that loads from its name alone and whose first task is a class: what
    the pixel analyses (PCA, ellipses per class) can take."""
    from mtlab.config.base import DATASETS
    from mtlab.config.schema import RunConfig  # noqa: F401  (assembling the schema registers every dataset)
    from mtlab.tasks import TASK_TYPES

    names = []
    for name, options in DATASETS.items():
        try:
            types = list(options.model_validate({"dataset": name}).task_types().values())
        except ValueError:  # needs more than its name (a table, an .npz)
            continue
        if types and TASK_TYPES.get(types[0]).class_indices:
            names.append(name)
    return names


@dataclass
class PcaFit:
    """The fitted decomposition: ``ratios`` (K,) explained-variance ratios, largest first, K = min(N, D);
    ``mean`` (D,) the training mean; ``axes`` (2, D) the first two principal axes as unit rows."""

    ratios: np.ndarray
    mean: np.ndarray
    axes: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """(N, D) pixels -> (N, 2) coordinates on the first two axes."""
        return (x - self.mean) @ self.axes.T


def fit_pca(x: np.ndarray) -> PcaFit:
    """Fit PCA to ``x`` (N, D) float; every component is kept so the ratios sum to 1.

    The ``covariance_eigh`` solver eigendecomposes the D x D covariance, much faster than an SVD of the N x D data
    when N >> D (MNIST: 60,000 x 784); scikit-learn fixes the sign of each axis, so results are deterministic.
    """
    try:
        from sklearn.decomposition import PCA
    except ImportError:
        raise MtlabError("PCA needs scikit-learn: pip install 'mtlab[analysis]'") from None

    pca = PCA(svd_solver="covariance_eigh").fit(x)
    return PcaFit(ratios=pca.explained_variance_ratio_, mean=pca.mean_, axes=pca.components_[:2].copy())


def components_for(ratios: np.ndarray, fraction: float) -> int:
    """The fewest leading components whose ratios sum to at least ``fraction`` (rounding slack of 1e-12 allowed)."""
    cumulative = np.cumsum(ratios)
    return int(np.searchsorted(cumulative, fraction - 1e-12) + 1)


@dataclass(frozen=True)
class Ellipse:
    """A class's confidence ellipse in the plane of two components: centre, full axis lengths, angle in degrees."""

    center: tuple[float, float]
    width: float
    height: float
    angle: float
    covariance: tuple[float, float, float]  # (S11, S12, S22)


def class_ellipse(points: np.ndarray, level: float = ELLIPSE_LEVEL) -> Ellipse:
    """The ``level`` region of a Gaussian fitted to ``points`` (n, 2): semi-axes ``sqrt(q * lambda_i)`` along the
    covariance eigenvectors, with ``q = chi2_2(level) = -2 ln(1 - level)`` (the chi-square quantile with 2 degrees
    of freedom has this closed form)."""
    center = points.mean(axis=0)  # (2,)
    cov = np.cov(points, rowvar=False)  # (2, 2), ddof 1
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    q = -2.0 * math.log(1.0 - level)
    major = eigenvectors[:, 1]
    return Ellipse(
        center=(float(center[0]), float(center[1])),
        width=2.0 * math.sqrt(q * max(float(eigenvalues[1]), 0.0)),
        height=2.0 * math.sqrt(q * max(float(eigenvalues[0]), 0.0)),
        angle=math.degrees(math.atan2(major[1], major[0])),
        covariance=(float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])),
    )


@dataclass
class SplitView:
    """One split in the plane of the first two components: ``points`` (N, 2), ``labels`` (N,), an ellipse per class."""

    name: str
    points: np.ndarray
    labels: np.ndarray
    ellipses: dict[int, Ellipse] = field(default_factory=dict)


@dataclass
class PcaAnalysis:
    dataset: str
    task: str
    class_names: tuple[str, ...]
    fit: PcaFit
    counts: dict[float, int]
    views: list[SplitView]
    seconds: float
    settings: dict[str, Any]


def pixel_matrix(split: Split) -> np.ndarray:
    """(N, C, H, W) uint8 images -> (N, C*H*W) float64 pixels in [0, 1]."""
    images = split.images
    return images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0


def load_for_analysis(dataset: str, *, data_dir: Path | None = None, seed: int = 0) -> Dataset:
    """The named dataset through the normal resolution chain (``--data-dir``, ``MTLAB_DATA``, cache, download)."""
    from pydantic import TypeAdapter, ValidationError

    from mtlab.config.schema import DataConfig
    from mtlab.data.catalog import load_dataset

    try:
        config = TypeAdapter(DataConfig).validate_python({"dataset": dataset, "data_dir": data_dir})
    except ValidationError:
        raise ConfigError(f"--dataset: unknown dataset {dataset!r}; choose one of {image_datasets()}") from None
    return load_dataset(config, seed)


def subset_split(split: Split, task: str, size: int | None, seed: int) -> Split:
    """A stratified (on ``task``), seeded subset of ``size`` examples, or the whole split."""
    from mtlab.data.split import stratified_pick

    if size is None or size >= len(split):
        return split
    return split.select(stratified_pick(split.labels[task], size, seeding.generator(seed, "analysis-subset")))


def analyze_pca(
    dataset: str,
    *,
    task: str | None = None,
    subset: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> PcaAnalysis:
    """Fit PCA on the training split (optionally a stratified subset of it), project train and test on the first two
    axes, and fit a 95% ellipse per class of ``task`` (default: the dataset's first task)."""
    data = load_for_analysis(dataset, data_dir=data_dir, seed=seed)
    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(f"--task: {dataset} has no task {task!r}; its tasks are {list(data.tasks)}")
    started = time.perf_counter()
    train = subset_split(data.train, task, subset, seed)
    x_train = pixel_matrix(train)  # (N, D) in [0, 1]
    fit = fit_pca(x_train)
    views = []
    for name, split in (("train", train), ("test", data.test)):
        points = fit.project(x_train if name == "train" else pixel_matrix(split))  # (N, 2)
        labels = split.labels[task].numpy()
        ellipses = {int(c): class_ellipse(points[labels == c]) for c in np.unique(labels) if (labels == c).sum() > 2}
        views.append(SplitView(name, points, labels, ellipses))
    return PcaAnalysis(
        dataset=dataset,
        task=task,
        class_names=data.tasks[task].class_names,
        fit=fit,
        counts={t: components_for(fit.ratios, t) for t in THRESHOLDS},
        views=views,
        seconds=time.perf_counter() - started,
        settings={"dataset": dataset, "task": task, "subset": subset, "seed": seed, "train": len(train)},
    )


# ------------------------------------------------------------------------------------------------------ output


def write_pca(analysis: PcaAnalysis, out: Path) -> dict[str, Path]:
    """Write the figures (PNG), the numbers behind them (CSV / JSON), ``report.md`` and ``report.html`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ratios = analysis.fit.ratios
    cumulative = np.cumsum(ratios)
    with atomic.replacing(out / "explained-variance.csv") as path, path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["component", "ratio", "cumulative"])
        writer.writerows(
            [k + 1, f"{r:.10g}", f"{c:.10g}"] for k, (r, c) in enumerate(zip(ratios, cumulative, strict=True))
        )
    for view in analysis.views:
        with atomic.replacing(out / f"projection-{view.name}.csv") as path, path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["pc1", "pc2", analysis.task])
            writer.writerows(
                [f"{p[0]:.6g}", f"{p[1]:.6g}", int(y)] for p, y in zip(view.points, view.labels, strict=True)
            )
    with atomic.replacing(out / "ellipses.csv") as path, path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["split", "class", "name", "pc1_mean", "pc2_mean", "s11", "s12", "s22", "width", "height", "angle"]
        )
        for view in analysis.views:
            for c, e in view.ellipses.items():
                writer.writerow(
                    [view.name, c, analysis.class_names[c], *e.center, *e.covariance, e.width, e.height, e.angle]
                )
    summary = {
        **analysis.settings,
        "components": len(ratios),
        "components_for": {f"{t:.2f}": k for t, k in analysis.counts.items()},
        "first_ratios": [float(r) for r in ratios[:10]],
        "seconds": round(analysis.seconds, 3),
    }
    atomic.write_text(out / "pca.json", json.dumps(summary, indent=2) + "\n")
    figures = _figures(analysis, out / "figures")
    _write_page(_blocks(analysis, figures), out, f"PCA of {analysis.dataset} — mtlab")
    return {"html": out / "report.html", "json": out / "pca.json", "figures": out / "figures"}


def _write_page(blocks: list, out: Path, title: str) -> None:
    from mtlab.pages.render import to_html, to_markdown

    atomic.write_text(out / "report.md", to_markdown(blocks, out))
    atomic.write_text(out / "report.html", to_html(blocks, title=title))


def _blocks(analysis: PcaAnalysis, figures: list) -> list:
    from mtlab.pages.blocks import Cell, Facts, Heading, Table, Text

    ratios = analysis.fit.ratios
    s = analysis.settings
    rows = [
        [Cell(f"{100 * t:.0f}%"), Cell(str(k), strong=t == 0.95), Cell(f"{100 * np.cumsum(ratios)[k - 1]:.2f}%")]
        for t, k in analysis.counts.items()
    ]
    return [
        Heading(f"PCA of {analysis.dataset}", 1),
        Text(
            "Principal components of the training pixels scaled to [0, 1] (centred on the training mean); the test "
            "split is projected on the training axes."
        ),
        Facts(
            [
                ("Training images", f"{s['train']:,}" + (" (stratified subset)" if s["subset"] else "")),
                ("Dimensions", f"{analysis.fit.mean.shape[0]:,}"),
                ("95% of variance", f"{analysis.counts[0.95]} components"),
                ("PC1, PC2", f"{ratios[0]:.3f}, {ratios[1]:.3f}"),
                ("Seed", str(s["seed"])),
                ("Time", f"{analysis.seconds:.1f} s"),
            ],
            cards=True,
        ),
        Heading("Components needed"),
        Table(
            ["Variance kept", "Components", "Exactly kept"],
            rows,
            "Fewest leading components whose explained-variance ratios sum to at least the target.",
        ),
        Heading("Figures"),
        *figures,
        Heading("Files", 3),
        Text(
            "explained-variance.csv (ratio per component), projection-train.csv / projection-test.csv (first two "
            "coordinates and label per image), ellipses.csv (per-class mean and covariance), pca.json (summary)."
        ),
    ]


def _figures(analysis: PcaAnalysis, out: Path) -> list:
    from matplotlib import colormaps, rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse as EllipsePatch

    from mtlab.pages.figures import STYLE, WIDTH, save_figure

    out.mkdir(parents=True, exist_ok=True)
    saved = []

    def save(fig: Figure, name: str, title: str, caption: str) -> None:
        saved.append(save_figure(fig, out / f"{name}.png", title, caption))

    with rc_context(STYLE):
        ratios = analysis.fit.ratios
        cumulative = np.cumsum(ratios)
        fig = Figure(figsize=(WIDTH, 4.0), layout="constrained")
        ax = fig.subplots()
        k = np.arange(1, len(ratios) + 1)
        ax.plot(k, 100 * cumulative, lw=2, color="#0969da", label="cumulative")
        ax.plot(k, 100 * ratios, lw=1.5, color="#8c959f", label="per component")
        for (t, n), color in zip(analysis.counts.items(), ("#1a7f37", "#cf222e", "#8250df"), strict=True):
            ax.axhline(100 * t, color=color, lw=0.8, ls=":")
            ax.axvline(n, color=color, lw=1.2, ls="--", label=f"{100 * t:.0f}%: {n} components")
        ax.set_xscale("log")
        ax.set_xlabel("number of components (log scale)")
        ax.set_ylabel("explained variance (%)")
        ax.set_title(f"Explained variance — {analysis.dataset}")
        ax.legend(loc="center right")
        save(
            fig,
            "explained-variance",
            "Explained variance",
            "Cumulative explained-variance ratio against the number of leading components (grey: each "
            "component's own ratio); dashed lines mark the components needed for 90, 95 and 99% of the variance.",
        )
        classes = len(analysis.class_names)
        cmap = colormaps["tab10" if classes <= 10 else "tab20"]
        for view in analysis.views:
            fig = Figure(figsize=(WIDTH * 0.75, WIDTH * 0.6), layout="constrained")
            ax = fig.subplots()
            colors = cmap(view.labels % cmap.N)  # (N, 4)
            ax.scatter(view.points[:, 0], view.points[:, 1], s=1.5, c=colors, alpha=0.35, lw=0, rasterized=True)
            for c, e in view.ellipses.items():
                ax.add_patch(
                    EllipsePatch(e.center, e.width, e.height, angle=e.angle, fill=False, lw=1.8, color=cmap(c % cmap.N))
                )
                if classes <= 20:
                    ax.plot([], [], color=cmap(c % cmap.N), lw=2.5, label=analysis.class_names[c])
            if classes <= 20:
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
            ax.set_xlabel(f"PC1 ({100 * ratios[0]:.1f}% of variance)")
            ax.set_ylabel(f"PC2 ({100 * ratios[1]:.1f}% of variance)")
            ax.set_title(f"{view.name.capitalize()} split on the first two components ({len(view.labels):,} images)")
            save(
                fig,
                f"scatter-{view.name}",
                f"First two components — {view.name}",
                f"Each {view.name} image projected on the first two training principal axes, coloured by "
                f"{analysis.task}; ellipses: the 95% region of a Gaussian with each class's mean and covariance.",
            )
    return saved


# --------------------------------------------------------------------------------------------------------- cli


