"""Which pairs of classes are linearly separable? Rosenblatt's perceptron, and an exact linear-programming test.

**Perceptron** (Rosenblatt, 1958): ``w = 0, b = 0``; visit the training examples one by one in a fixed order (a seeded
permutation, repeated every epoch); example ``(x, y)``, ``y`` in {-1, +1}, is a mistake when ``y (w.x + b) <= 0``
(sign activation, sign(0) counted wrong), and only mistakes update: ``w += lr y x``, ``b += lr y``. Starting from
zero, every weight vector is ``lr`` times an integer combination of examples, so ``lr`` rescales (w, b) without
changing a single prediction; it is configurable for comparison with the reference (which used 0.004-0.08). On a
separable set the algorithm stops making mistakes after at most (R / gamma)^2 updates (Novikoff, 1962); on a
non-separable one it never does - so "did not converge within the budget" proves nothing, hence:

**Exact test.** A labelled set is strictly linearly separable iff the linear program

    maximise t   subject to   y_i (w.x_i + b) >= t  for every i,   -1 <= w_j <= 1

has optimum t* > 0 (any separating (w, b) can be scaled into the box). It is solved by constraint generation
(cutting planes; Kelley, 1960): solve it on a working set W of examples with HiGHS (Huangfu & Hall, 2018, through
``scipy.optimize.linprog(method="highs")``); if t*_W <= ``tol`` a subset is already inseparable, so the whole set is;
otherwise the returned (w, b) is checked on every example - all margins > 0 is a certificate of separability - and
the most violated examples join W. W starts from the examples with the smallest margins under a hint (the pair's
perceptron, nearly separating after its epochs; else the nearest-centroid rule), which saves about a third of the
time on the hard MNIST pairs. Optima below ``tol`` (HiGHS's feasibility tolerance, 1e-7, at |w| <= 1) are reported
as not separable: at double precision such a set cannot be told from an inseparable one.

Why not the plain feasibility LP ``y_i (w.x_i + b) >= 1`` on all examples: on MNIST 4-vs-9 (11,791 images) HiGHS had
not answered after 5 minutes, and on working subsets it ended in status "unknown" (the unbounded scale makes it
ill-conditioned); the bounded form always has an optimum, and the working set keeps each LP small.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mtlab import atomic, seeding
from mtlab.analysis.pca import load_for_analysis, subset_split

DATASETS = ("mnist", "mnist-sample", "fashion-mnist", "fashion-mnist-sample")
LP_TOL = 1e-7

# ------------------------------------------------------------------------------------------------- perceptron


@dataclass
class PerceptronResult:
    """``weights`` (D,), ``bias``; ``converged``: zero training mistakes with the final weights; ``epochs``: passes
    that made at least one update (the mistake-free pass that shows convergence is not counted); ``mistakes`` per
    pass."""

    weights: np.ndarray
    bias: float
    converged: bool
    epochs: int
    mistakes: list[int]
    seconds: float


def perceptron(
    x: np.ndarray, y: np.ndarray, *, lr: float = 0.01, max_epochs: int = 100, seed: int = 0
) -> PerceptronResult:
    """Train Rosenblatt's perceptron on ``x`` (N, D) float, ``y`` (N,) in {-1, +1}; see the module docstring.

    The examples are visited strictly in order, one update per mistake; the scan is vectorised without changing
    that: the margins of the next block of examples are computed with the current weights in one product, and the
    first mistake among them is the next sample the sequential algorithm would update on (all before it are correct
    and leave the weights unchanged). The block grows while there are no mistakes and shrinks after one.
    """
    started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(y))
    xs, ys = np.ascontiguousarray(x[order], dtype=np.float64), y[order].astype(np.float64)  # (N, D), (N,)
    w, bias = np.zeros(xs.shape[1]), 0.0
    mistakes: list[int] = []
    for _ in range(max_epochs):
        bias, count = _perceptron_pass(xs, ys, w, bias, lr)
        if count == 0:
            break
        mistakes.append(count)
    converged = bool(np.all(ys * (xs @ w + bias) > 0))
    return PerceptronResult(w, bias, converged, len(mistakes), mistakes, time.perf_counter() - started)


def _perceptron_pass(xs: np.ndarray, ys: np.ndarray, w: np.ndarray, bias: float, lr: float) -> tuple[float, int]:
    """One pass in order; updates ``w`` in place and returns the new bias and the number of mistakes."""
    n = len(ys)
    i, mistakes, block = 0, 0, 64
    while i < n:
        stop = min(i + block, n)
        margins = ys[i:stop] * (xs[i:stop] @ w + bias)  # (block,) with the current weights
        wrong = np.flatnonzero(margins <= 0)
        if wrong.size == 0:
            i, block = stop, min(2 * block, 8192)
            continue
        k = i + int(wrong[0])
        w += (lr * ys[k]) * xs[k]
        bias += lr * ys[k]
        mistakes += 1
        i, block = k + 1, max(16, 2 * (int(wrong[0]) + 1))
    return bias, mistakes


# ------------------------------------------------------------------------------------------------- exact (LP)


@dataclass
class LpVerdict:
    """``separable``: True (certified by ``weights``/``bias``), False (a working subset is inseparable) or None
    (the solver stopped: time limit or numerical trouble, see ``message``). ``margin``: t* of the last working set;
    ``min_margin``: the smallest y (w.x + b) over all examples for the last (w, b)."""

    separable: bool | None
    margin: float
    min_margin: float
    rounds: int
    working_set: int
    seconds: float
    message: str = ""
    weights: np.ndarray | None = field(default=None, repr=False)
    bias: float = 0.0


def lp_separable(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hint: tuple[np.ndarray, float] | None = None,
    initial: int = 600,
    step: int = 600,
    tol: float = LP_TOL,
    time_limit: float | None = None,
) -> LpVerdict:
    """Decide whether ``x`` (N, D) with labels ``y`` (N,) in {-1, +1} is linearly separable (module docstring).

    ``hint``: weights (D,) and bias of an approximate separator; the first working set is the ``initial`` examples
    (half per class) with the smallest margins under it. Each round adds at most ``step`` violated examples.
    """
    started = time.perf_counter()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    working = _initial_working_set(x, y, initial, hint)
    rounds, t, min_margin = 0, float("nan"), float("nan")
    while True:
        rounds += 1
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
        if remaining is not None and remaining <= 0:
            return _verdict(None, t, min_margin, rounds - 1, working, started, "time limit reached")
        solution = _max_margin_lp(x[working], y[working], remaining)
        if solution is None:
            return _verdict(None, t, min_margin, rounds, working, started, "HiGHS stopped without an optimum")
        w, b, t = solution
        if t <= tol:
            return _verdict(False, t, min_margin, rounds, working, started, "a working subset is inseparable")
        margins = y * (x @ w + b)  # (N,)
        min_margin = float(margins.min())
        if min_margin > 0:
            return _verdict(True, t, min_margin, rounds, working, started, "separating (w, b) found", w, b)
        inside = np.zeros(len(y), dtype=bool)
        inside[working] = True
        violated = np.flatnonzero((margins < t) & ~inside)
        if violated.size == 0:
            return _verdict(None, t, min_margin, rounds, working, started, "numerically undecided")
        violated = violated[np.argsort(margins[violated], kind="stable")][:step]
        working = np.union1d(working, violated)


def _verdict(separable, t, min_margin, rounds, working, started, message, w=None, b=0.0) -> LpVerdict:
    return LpVerdict(
        separable, float(t), float(min_margin), rounds, len(working), time.perf_counter() - started, message, w, b
    )


def _initial_working_set(x: np.ndarray, y: np.ndarray, size: int, hint: tuple[np.ndarray, float] | None) -> np.ndarray:
    """The ``size // 2`` examples of each class closest to (or beyond) the hint's boundary, sorted; without a hint,
    the nearest-centroid boundary (w = mean_+ - mean_-, through the midpoint of the means)."""
    if hint is None:
        mean_pos, mean_neg = x[y > 0].mean(axis=0), x[y < 0].mean(axis=0)  # (D,), (D,)
        direction = mean_pos - mean_neg
        hint = direction, -float(direction @ (mean_pos + mean_neg)) / 2
    margins = y * (x @ hint[0] + hint[1])  # (N,)
    picked = []
    for label in (1.0, -1.0):
        members = np.flatnonzero(y == label)
        picked.append(members[np.argsort(margins[members], kind="stable")[: max(1, size // 2)]])
    return np.sort(np.concatenate(picked))


def _max_margin_lp(x: np.ndarray, y: np.ndarray, time_limit: float | None) -> tuple[np.ndarray, float, float] | None:
    """max t s.t. y_i (w.x_i + b) >= t, |w_j| <= 1 on (m, D) examples; variables [w (D), b, t]. None if no optimum."""
    import scipy.sparse as sparse
    from scipy.optimize import linprog

    m, d = x.shape
    # Each row: -y_i x_i . w - y_i b + t <= 0.
    a_ub = sparse.hstack(
        [sparse.csr_matrix(-y[:, None] * x), sparse.csr_matrix(-y[:, None]), sparse.csr_matrix(np.ones((m, 1)))],
        format="csr",
    )
    cost = np.zeros(d + 2)
    cost[-1] = -1.0  # minimise -t
    bounds = [(-1.0, 1.0)] * d + [(None, None), (None, None)]
    options = {} if time_limit is None else {"time_limit": float(time_limit)}
    result = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m), bounds=bounds, method="highs", options=options)
    if result.status != 0:
        return None
    return result.x[:d], float(result.x[d]), float(result.x[d + 1])


# ----------------------------------------------------------------------------------------------------- pairs


@dataclass
class PairResult:
    """One pair of classes ``a < b`` (label +1 for ``a``, -1 for ``b``)."""

    a: int
    b: int
    n_train: int
    n_test: int
    perceptron: PerceptronResult
    train_acc: float
    test_acc: float
    lp: LpVerdict | None

    def row(self) -> dict[str, Any]:
        p, lp = self.perceptron, self.lp
        return {
            "a": self.a,
            "b": self.b,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "perceptron_converged": p.converged,
            "perceptron_epochs": p.epochs,
            "perceptron_last_mistakes": p.mistakes[-1] if p.mistakes else 0,
            "perceptron_seconds": round(p.seconds, 4),
            "train_acc": self.train_acc,
            "test_acc": self.test_acc,
            "lp_separable": None if lp is None else lp.separable,
            "lp_margin": None if lp is None else lp.margin,
            "lp_min_margin": None if lp is None else lp.min_margin,
            "lp_rounds": None if lp is None else lp.rounds,
            "lp_working_set": None if lp is None else lp.working_set,
            "lp_seconds": None if lp is None else round(lp.seconds, 4),
            "lp_message": None if lp is None else lp.message,
        }


@dataclass
class SeparabilityAnalysis:
    dataset: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    pairs: list[PairResult]
    settings: dict[str, Any]

    @property
    def perceptron_seconds(self) -> float:
        return sum(p.perceptron.seconds for p in self.pairs)

    @property
    def lp_seconds(self) -> float:
        return sum(p.lp.seconds for p in self.pairs if p.lp is not None)


def pair_arrays(images: Any, labels: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Examples of classes ``a`` and ``b`` from (N, C, H, W) uint8 images: x (n, C*H*W) in [0, 1], y (n,) +1 / -1."""
    keep = np.flatnonzero((labels == a) | (labels == b))
    x = images[keep].reshape(len(keep), -1).numpy().astype(np.float64) / 255.0
    return x, np.where(labels[keep] == a, 1.0, -1.0)


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """Fraction with y (w.x + b) > 0 (the perceptron's own notion of a correct answer)."""
    return float(np.mean(y * (x @ w + b) > 0))


def analyze_separability(
    dataset: str = "mnist",
    *,
    lr: float = 0.01,
    max_epochs: int = 100,
    subset: int | None = None,
    seed: int = 0,
    exact: bool = True,
    lp_time_limit: float | None = None,
    data_dir: Path | None = None,
    on_pair: Callable[[PairResult], None] | None = None,
) -> SeparabilityAnalysis:
    """Perceptron and (with ``exact``) the LP test for every pair of classes of the dataset's first task.

    ``subset``: a stratified, seeded subset of the training split (default: all of it); the test split is whole.
    """
    data = load_for_analysis(dataset, data_dir=data_dir, seed=seed)
    task = next(iter(data.tasks))
    train = subset_split(data.train, task, subset, seed)
    train_labels, test_labels = train.labels[task].numpy(), data.test.labels[task].numpy()
    channels, height, width = data.input_shape
    classes = data.tasks[task].num_classes
    results = []
    for a, b in combinations(range(classes), 2):
        x, y = pair_arrays(train.images, train_labels, a, b)
        x_test, y_test = pair_arrays(data.test.images, test_labels, a, b)
        fitted = perceptron(x, y, lr=lr, max_epochs=max_epochs, seed=seeding.stream_seed(seed, f"perceptron/{a}-{b}"))
        hint = (fitted.weights, fitted.bias)
        verdict = lp_separable(x, y, hint=hint, time_limit=lp_time_limit) if exact else None
        result = PairResult(
            a,
            b,
            len(y),
            len(y_test),
            fitted,
            accuracy(x, y, fitted.weights, fitted.bias),
            accuracy(x_test, y_test, fitted.weights, fitted.bias),
            verdict,
        )
        results.append(result)
        if on_pair is not None:
            on_pair(result)
    settings = {
        "dataset": dataset,
        "task": task,
        "lr": lr,
        "max_epochs": max_epochs,
        "subset": subset,
        "seed": seed,
        "exact": exact,
        "lp_time_limit": lp_time_limit,
        "train": len(train),
        "test": len(data.test),
    }
    shape = (height, width) if channels == 1 else (channels * height, width)
    return SeparabilityAnalysis(dataset, data.tasks[task].class_names, shape, results, settings)


# ------------------------------------------------------------------------------------------------------ output


def write_separability(analysis: SeparabilityAnalysis, out: Path) -> dict[str, Path]:
    """Write the figures, ``pairs.csv``, ``perceptron-weights.csv``, ``separability.json`` and the report pages."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [p.row() for p in analysis.pairs]
    with atomic.replacing(out / "pairs.csv") as path, path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic.replacing(out / "perceptron-weights.csv") as path, path.open("w", newline="") as f:
        writer = csv.writer(f)
        size = analysis.pairs[0].perceptron.weights.shape[0]
        writer.writerow(["a", "b", "bias", *(f"w{i}" for i in range(size))])
        for p in analysis.pairs:
            writer.writerow([p.a, p.b, f"{p.perceptron.bias:.8g}", *(f"{v:.8g}" for v in p.perceptron.weights)])
    summary = {
        **analysis.settings,
        "perceptron_converged": sum(p.perceptron.converged for p in analysis.pairs),
        "lp_separable": sum(bool(p.lp and p.lp.separable) for p in analysis.pairs),
        "lp_not_separable": sum(bool(p.lp and p.lp.separable is False) for p in analysis.pairs),
        "lp_undecided": sum(bool(p.lp and p.lp.separable is None) for p in analysis.pairs),
        "perceptron_seconds": round(analysis.perceptron_seconds, 3),
        "lp_seconds": round(analysis.lp_seconds, 3),
        "pairs": rows,
    }
    atomic.write_text(out / "separability.json", json.dumps(summary, indent=2) + "\n")
    figures = _figures(analysis, out / "figures")
    blocks = _blocks(analysis, figures)
    from mtlab.pages.render import to_html, to_markdown

    atomic.write_text(out / "report.md", to_markdown(blocks, out))
    atomic.write_text(out / "report.html", to_html(blocks, f"Linear separability of {analysis.dataset} pairs"))
    return {"html": out / "report.html", "json": out / "separability.json", "figures": out / "figures"}


def _blocks(analysis: SeparabilityAnalysis, figures: list) -> list:
    from mtlab.pages.blocks import Cell, Facts, Heading, Table, Text

    s = analysis.settings
    names = analysis.class_names
    converged = [p for p in analysis.pairs if p.perceptron.converged]
    separable = [p for p in analysis.pairs if p.lp is not None and p.lp.separable]
    exact = s["exact"]
    facts = [
        ("Training images", f"{s['train']:,}" + (" (stratified subset)" if s["subset"] else "")),
        ("Perceptron", f"lr {s['lr']}, at most {s['max_epochs']} epochs, seed {s['seed']}"),
        ("Converged", f"{len(converged)} of {len(analysis.pairs)} pairs"),
        ("Perceptron time", f"{analysis.perceptron_seconds:.1f} s"),
    ]
    if exact:
        facts += [
            ("LP separable", f"{len(separable)} of {len(analysis.pairs)} pairs"),
            ("LP time", f"{analysis.lp_seconds:.1f} s"),
        ]
    rows = []
    for p in analysis.pairs:
        lp = p.lp
        verdict = "–" if lp is None else {True: "separable", False: "not separable", None: "undecided"}[lp.separable]
        rows.append(
            [
                Cell(f"{names[p.a]} vs {names[p.b]}", kind="text"),
                Cell(f"{p.n_train:,}"),
                Cell("yes" if p.perceptron.converged else "no", strong=p.perceptron.converged, kind="text"),
                Cell(str(p.perceptron.epochs)),
                Cell(f"{p.perceptron.seconds:.2f} s"),
                Cell(f"{100 * p.train_acc:.2f}"),
                Cell(f"{100 * p.test_acc:.2f}"),
                Cell(verdict, strong=bool(lp and lp.separable), kind="text"),
                Cell("–" if lp is None else f"{lp.seconds:.1f} s", note="" if lp is None else f"{lp.rounds} LPs"),
            ]
        )
    table = Table(
        ["Pair", "Train n", "Converged", "Epochs", "Perceptron time", "Train acc (%)", "Test acc (%)", "Exact", "LP"],
        rows,
        "Converged: zero training mistakes with the final weights. Epochs: passes that changed the weights. "
        "Exact: the LP test (maximise the margin t with |w| <= 1 by constraint generation; LPs: rounds solved).",
    )
    return [
        Heading(f"Linear separability of {analysis.dataset} class pairs", 1),
        Text(
            "For every pair of classes: Rosenblatt's perceptron (updates on mistakes only, w += lr·y·x, b += lr·y) on "
            "the pair's training images with pixels in [0, 1], and an exact linear-programming test of whether any "
            "hyperplane separates them. A perceptron that does not converge within its budget proves nothing; "
            "the LP decides."
            if exact
            else "For every pair of classes: Rosenblatt's perceptron on the pair's training images (no exact test run)."
        ),
        Facts(facts, cards=True),
        Heading("Pairs"),
        table,
        Heading("Figures"),
        *figures,
        Heading("Files", 3),
        Text(
            "pairs.csv (one row per pair), perceptron-weights.csv (bias and weights per pair), separability.json "
            "(settings, totals and timings)."
        ),
    ]


def _pair_matrix(analysis: SeparabilityAnalysis, value: Callable[[PairResult], float]) -> np.ndarray:
    """(K, K) symmetric matrix of ``value(pair)``, NaN on the diagonal."""
    k = len(analysis.class_names)
    matrix = np.full((k, k), np.nan)
    for p in analysis.pairs:
        matrix[p.a, p.b] = matrix[p.b, p.a] = value(p)
    return matrix


def _weight_mosaic(analysis: SeparabilityAnalysis) -> np.ndarray:
    """One image of all weight vectors: pair (a, b) at row a, column b (and mirrored, negated, at b, a), each scaled
    to [-1, 1] by its largest weight; one blank (NaN) pixel between tiles. Shape (K (H+1) - 1, K (W+1) - 1)."""
    height, width = analysis.image_shape
    k = len(analysis.class_names)
    mosaic = np.full((k * (height + 1) - 1, k * (width + 1) - 1), np.nan)
    for p in analysis.pairs:
        w = p.perceptron.weights.reshape(height, width)
        w = w / (float(np.abs(w).max()) or 1.0)
        for row, col, sign in ((p.a, p.b, 1.0), (p.b, p.a, -1.0)):
            top, left = row * (height + 1), col * (width + 1)
            mosaic[top : top + height, left : left + width] = sign * w
    return mosaic


def _figures(analysis: SeparabilityAnalysis, out: Path) -> list:
    from matplotlib import rc_context
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from mtlab.pages.figures import STYLE, WIDTH, save_figure

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    k = len(analysis.class_names)
    ticks = list(range(k))

    def save(fig: Figure, name: str, title: str, caption: str) -> None:
        saved.append(save_figure(fig, out / f"{name}.png", title, caption))

    def frame(ax, title: str) -> None:
        ax.set_xticks(ticks, analysis.class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(ticks, analysis.class_names)
        ax.grid(False)
        ax.set_title(title)

    with rc_context(STYLE):
        # Verdicts: 0 = no / not separable, 1 = converged / separable, 2 = undecided.
        verdict_cmap = ListedColormap(["#f2c4c4", "#a6dba0", "#d0d7de"])
        panels = [("Perceptron: converged?", _pair_matrix(analysis, lambda p: float(p.perceptron.converged)))]
        if analysis.settings["exact"]:
            panels.append(
                (
                    "Exact (LP): separable?",
                    _pair_matrix(analysis, lambda p: {True: 1, False: 0, None: 2}[p.lp.separable]),
                )
            )
        fig = Figure(figsize=(WIDTH, WIDTH / 2 + 0.3), layout="constrained")
        for ax, (title, matrix) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
            ax.imshow(np.ma.masked_invalid(matrix), cmap=verdict_cmap, vmin=0, vmax=2)
            for p in analysis.pairs:
                if title.startswith("Perceptron"):
                    text = str(p.perceptron.epochs) if p.perceptron.converged else "no"
                else:
                    text = {True: "yes", False: "no", None: "?"}[p.lp.separable]
                for i, j in ((p.a, p.b), (p.b, p.a)):
                    ax.text(j, i, text, ha="center", va="center", fontsize=8)
            frame(ax, title)
        epochs = analysis.settings["max_epochs"]
        save(
            fig,
            "separability-matrix",
            "Perceptron verdict vs exact verdict",
            f"Left: green where the perceptron reached zero training mistakes within {epochs} epochs (number: "
            "epochs that changed the weights), red where it did not. Right: the exact LP verdict - green separable "
            "(a separating hyperplane was found and checked on every training image), red not separable, grey "
            "undecided. Red on the left and green on the right: separable, but the perceptron's budget was too small.",
        )

        fig = Figure(figsize=(WIDTH, WIDTH / 2 + 0.3), layout="constrained")
        for ax, (name, attr) in zip(fig.subplots(1, 2), (("Training", "train_acc"), ("Test", "test_acc")), strict=True):
            matrix = _pair_matrix(analysis, lambda p, a=attr: 100 * getattr(p, a))
            low = min(float(np.nanmin(matrix)), 99.9)
            image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=low, vmax=100)
            for p in analysis.pairs:
                light = (matrix[p.a, p.b] - low) / (100 - low) > 0.6  # the upper part of viridis is light
                for i, j in ((p.a, p.b), (p.b, p.a)):
                    text = f"{matrix[i, j]:.1f}".replace("100.0", "100")
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if light else "white")
            frame(ax, f"{name} accuracy of the perceptron (%)")
            fig.colorbar(image, ax=ax, shrink=0.8)
        save(
            fig,
            "perceptron-accuracy",
            "Perceptron accuracy per pair",
            "Accuracy of each pair's final perceptron on the pair's training images (left) and test images (right).",
        )

        fig = Figure(figsize=(WIDTH * 0.75, WIDTH * 0.75), layout="constrained")
        ax = fig.subplots()
        ax.imshow(_weight_mosaic(analysis), cmap="RdBu_r", vmin=-1, vmax=1)
        height, _width = analysis.image_shape
        centers = [(height + 1) * c + height / 2 - 0.5 for c in range(k)]
        ax.set_xticks(centers, analysis.class_names)
        ax.set_yticks(centers, analysis.class_names)
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title("Perceptron weights (row a vs column b)")
        save(
            fig,
            "perceptron-weights",
            "Perceptron weights",
            "Row a, column b: the weights of the a-vs-b perceptron as an image, red pixels vote for a and blue ones "
            "for b (the b-vs-a tile is the same image negated); each tile scaled to its own largest weight.",
        )
    return saved


# --------------------------------------------------------------------------------------------------------- cli


