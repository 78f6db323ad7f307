"""``mtlab analyze transfer``: how well a trained trunk's features serve another task - a linear probe.

Alain & Bengio (2016), "Understanding intermediate layers using linear classifier probes": freeze the network, read
its features h(x) (here each trunk's output, ``model.features(x)`` (B, F)), and fit only a linear classifier
``softmax(W h + b)`` on them. Its accuracy measures how linearly decodable the task is from what the trunk learned,
so trunks trained differently (shared by several tasks vs a single task's) can be compared on a task one of them
never saw, or with little data (``fraction`` of the training examples).

Protocol, per run and trunk: the run's own carve (same config and seed -> the very examples it trained on, and its
validation and test splits); features standardised with training-split statistics; multinomial logistic regression
fitted by full-batch L-BFGS (convex, started from zero, float64 on the CPU: deterministic) for each L2 weight of
``l2_grid``, minimising ``mean cross_entropy + l2 / 2 * ||W||^2``; the weight with the best validation accuracy is
kept (ties: the stronger penalty) and the test split is evaluated once, with it. A run without a validation split
lends 10% of its training split (stratified, seeded) to the probe's validation. ``fraction`` < 1 keeps that share of
the (remaining) training examples, stratified on the probed task and seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mtlab import seeding
from mtlab.analysis.loaded import TrainedRun, load_trained_run
from mtlab.analysis.output import AnalysisOutput, Options
from mtlab.data.dataset import Split
from mtlab.data.split import stratified_pick
from mtlab.errors import MtlabError
from mtlab.train.device import resolve_device

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mtlab.pages.blocks import Block

BORROWED_VAL = 0.1  # share of the training split held out for the probe's validation when a run has none


@dataclass(frozen=True)
class ProbeSettings:
    """L2 weights tried (model selection on validation accuracy) and L-BFGS iterations per fit."""

    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    max_iter: int = 100


@dataclass
class ProbeResult:
    """One row of the transfer table: a run's trunk probed for ``task``."""

    run: str
    trunk: str
    task: str
    trained_tasks: list[str]
    sharing: str
    fraction: float
    train_examples: int
    val_examples: int
    test_examples: int
    features: int
    l2: float
    train_acc: float
    val_acc: float
    test_acc: float
    chance: float
    val_borrowed: bool = False
    val_by_l2: dict[str, float] = field(default_factory=dict)

    @property
    def trained_on_task(self) -> bool:
        return self.task in self.trained_tasks


@dataclass
class Probe:
    """A fitted linear probe: standardisation ``(h - mean) / std`` (1, F) each, then ``logits = h W + b``."""

    mean: Tensor
    std: Tensor
    weight: Tensor  # (F, K)
    bias: Tensor  # (K,)

    def logits(self, h: Tensor) -> Tensor:
        return ((h - self.mean) / self.std) @ self.weight + self.bias  # (N, K)

    def accuracy(self, h: Tensor, y: Tensor) -> float:
        return (self.logits(h).argmax(1) == y).float().mean().item()


def fit_probe(h: Tensor, y: Tensor, num_classes: int, l2: float, max_iter: int = 100) -> Probe:
    """Multinomial logistic regression on features ``h`` (N, F), labels ``y`` (N,), from zero weights.

    Minimises ``mean cross-entropy + l2 / 2 * ||W||^2`` with scipy's L-BFGS-B in float64 on the CPU, with the exact
    gradient ``dW = Z^T (P - Y) / N + l2 W``, ``db = sum_n (P - Y) / N`` (P: softmax probabilities, Y: one-hot).
    """
    from scipy.optimize import minimize

    mean = h.mean(0, keepdim=True)  # (1, F)
    std = h.std(0, keepdim=True).clamp_min(1e-6) if len(h) > 1 else torch.ones_like(mean)
    z = ((h - mean) / std).double().cpu().numpy()  # (N, F)
    n, f = z.shape
    onehot = np.eye(num_classes)[y.cpu().numpy()]  # (N, K)

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = theta[: f * num_classes].reshape(f, num_classes), theta[f * num_classes :]
        logits = z @ weight + bias  # (N, K)
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))  # (N, K) log-softmax
        residual = (np.exp(log_p) - onehot) / n  # (N, K)
        loss = -(onehot * log_p).sum() / n + 0.5 * l2 * (weight**2).sum()
        gradient = np.concatenate([(z.T @ residual + l2 * weight).ravel(), residual.sum(0)])
        return loss, gradient

    theta = np.zeros(f * num_classes + num_classes)
    theta = minimize(loss_and_gradient, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iter}).x
    weight = torch.from_numpy(theta[: f * num_classes].reshape(f, num_classes)).float().to(h.device)
    bias = torch.from_numpy(theta[f * num_classes :]).float().to(h.device)
    return Probe(mean, std, weight, bias)


def select_probe(
    train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], num_classes: int, settings: ProbeSettings
) -> tuple[Probe, float, dict[str, float]]:
    """Fit one probe per L2 weight; keep the best on validation accuracy (ties: the larger weight)."""
    best: tuple[Probe, float] | None = None
    best_acc = -1.0
    val_by_l2 = {}
    for l2 in sorted(settings.l2_grid, reverse=True):
        probe = fit_probe(*train, num_classes, l2, settings.max_iter)
        acc = probe.accuracy(*val)
        val_by_l2[f"{l2:g}"] = acc
        if acc > best_acc:
            best, best_acc = (probe, l2), acc
    assert best is not None
    return best[0], best[1], val_by_l2


def trunk_features(run: TrainedRun, split: Split, batch_size: int) -> dict[str, Tensor]:
    """``model.features`` of every example of ``split``: ``{trunk key: (N, F)}``, no gradients, on the run's device."""
    chunks: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x = run.normalizer(split.images[start : start + batch_size].to(run.device))  # (B, C, H, W)
            for key, h in run.model.features(x).items():  # (B, F)
                chunks.setdefault(key, []).append(h.float())
    return {key: torch.cat(parts) for key, parts in chunks.items()}


def probe_run(
    run: TrainedRun,
    task: str,
    *,
    fraction: float = 1.0,
    trunks: Sequence[str] | None = None,
    settings: ProbeSettings | None = None,
) -> list[ProbeResult]:
    """Probe each trunk of ``run`` (``trunks``, default all) for ``task``, as the module docstring describes."""
    settings = settings or ProbeSettings()
    if not 0 < fraction <= 1:
        raise MtlabError(f"--fraction {fraction}: must be in (0, 1]")
    tasks, splits = run.splits()
    if task not in tasks:
        raise MtlabError(f"--task {task}: unknown task; {run.config.data.dataset} has {list(tasks)}")
    train, val, borrowed = splits.train, splits.val, False
    if val is None or len(val) == 0:
        train, val = _hold_out(train, task, run.config.seed)
        borrowed = True
    if fraction < 1:
        keep = max(tasks[task].num_classes, round(fraction * len(train)))
        train = train.select(
            stratified_pick(
                train.labels[task], min(keep, len(train)), seeding.generator(run.config.seed, f"probe/{task}/fraction")
            )
        )
    batch = run.config.train.eval_batch_size
    features = {
        name: trunk_features(run, split, batch)
        for name, split in (("train", train), ("val", val), ("test", splits.test))
    }
    keys = list(features["train"])
    for key in trunks or []:
        if key not in keys:
            raise MtlabError(f"--trunk {key}: {run.path} has trunks {keys}")
    labels = {
        name: split.labels[task].to(run.device)
        for name, split in (("train", train), ("val", val), ("test", splits.test))
    }
    test_counts = torch.bincount(labels["test"], minlength=tasks[task].num_classes)
    sharing = run.config.model.sharing_label()
    results = []
    for key in trunks or keys:
        probe, l2, val_by_l2 = select_probe(
            (features["train"][key], labels["train"]),
            (features["val"][key], labels["val"]),
            tasks[task].num_classes,
            settings,
        )
        results.append(
            ProbeResult(
                run=str(run.path),
                trunk=key,
                task=task,
                trained_tasks=run.config.task_names,
                sharing=sharing,
                fraction=fraction,
                train_examples=len(train),
                val_examples=len(val),
                test_examples=len(splits.test),
                features=int(features["train"][key].shape[1]),
                l2=l2,
                train_acc=probe.accuracy(features["train"][key], labels["train"]),
                val_acc=probe.accuracy(features["val"][key], labels["val"]),
                test_acc=probe.accuracy(features["test"][key], labels["test"]),  # the one test evaluation
                chance=(test_counts.max() / test_counts.sum()).item(),
                val_borrowed=borrowed,
                val_by_l2=val_by_l2,
            )
        )
    return results


def _hold_out(train: Split, task: str, seed: int) -> tuple[Split, Split]:
    """Split ``BORROWED_VAL`` of ``train`` off (stratified on ``task``, seeded) as the probe's validation split."""
    labels = train.labels[task]
    val_index = stratified_pick(
        labels, max(1, round(BORROWED_VAL * len(train))), seeding.generator(seed, f"probe/{task}/val")
    )
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[val_index] = False
    return train.select(keep.nonzero().squeeze(1)), train.select(val_index)


# -------------------------------------------------------------------------------------------------------- cli


def write_transfer(args: Options) -> tuple[Path, list[ProbeResult]]:
    """Probe every ``--run``; write ``transfer.csv``, ``transfer.json``, ``transfer.png`` and the page."""
    from mtlab.pages.blocks import Facts, Heading, Text

    device = resolve_device(args.device)
    results = []
    for run_dir in args.run:
        run = load_trained_run(run_dir, device)
        results += probe_run(run, args.task, fraction=args.fraction, trunks=args.trunk)
    out = args.out if args.out is not None else Path(args.run[0]) / "analysis" / "transfer"
    output = AnalysisOutput(out, f"Transfer probe — {args.task}")
    rows = [
        {k: v for k, v in asdict(r).items() if k != "val_by_l2"} | {"trained_on_task": r.trained_on_task}
        for r in results
    ]
    for row in rows:
        row["trained_tasks"] = " ".join(row["trained_tasks"])
    output.csv("transfer", rows)
    output.json(
        "transfer",
        {
            "task": args.task,
            "fraction": args.fraction,
            "settings": asdict(ProbeSettings()),
            "results": [asdict(r) | {"trained_on_task": r.trained_on_task} for r in results],
        },
    )
    blocks: list[Block] = [
        Heading(f"Linear probe for {args.task}", 1),
        Facts(
            [
                ("Task", args.task),
                ("Runs", str(len(args.run))),
                ("Rows", str(len(results))),
                ("Training fraction", f"{args.fraction:g}"),
            ],
            cards=True,
        ),
        Text(
            "Each trunk is frozen and a linear classifier is fitted on its features (Alain & Bengio, 2016), on the "
            "run's own training split; the L2 weight is chosen on the validation split and the test split is "
            "evaluated once. Chance: the test share of the most frequent class."
        ),
        _table(results),
        output.figure(
            _bars(results),
            "transfer",
            "Probe test accuracy",
            "Test accuracy of the linear probe per run and trunk; the tick marks chance.",
        ),
    ]
    if any(r.val_borrowed for r in results):
        blocks.append(
            Text(
                f"Runs without a validation split lent {BORROWED_VAL:.0%} of their training split to "
                "the probe's validation.",
                muted=True,
            )
        )
    return output.page(blocks), results


def _label(r: ProbeResult) -> str:
    return f"{Path(r.run).name} · {r.trunk}"


def _table(results: list[ProbeResult]):
    from mtlab.pages.blocks import Cell, Table

    best = max(r.test_acc for r in results)
    return Table(
        [
            "Run · trunk",
            "Trained on",
            "Sharing",
            "Train n",
            "Features",
            "L2",
            "Val acc (%)",
            "Test acc (%)",
            "Chance (%)",
        ],
        [
            [
                Cell(_label(r), kind="code"),
                Cell(", ".join(r.trained_tasks), kind="text"),
                Cell(r.sharing, kind="text"),
                Cell(str(r.train_examples)),
                Cell(str(r.features)),
                Cell(f"{r.l2:g}"),
                Cell(f"{100 * r.val_acc:.2f}"),
                Cell(f"{100 * r.test_acc:.2f}", strong=r.test_acc == best),
                Cell(f"{100 * r.chance:.2f}"),
            ]
            for r in results
        ],
        "One row per run and trunk; numbers in transfer.csv / transfer.json (with validation accuracy per L2).",
    )


def _bars(results: list[ProbeResult]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.4 * len(results) + 0.9), layout="constrained")
    ax = fig.subplots()
    y = range(len(results))
    ax.barh(y, [100 * r.test_acc for r in results], height=0.6, color="#4c78a8")
    ax.scatter([100 * r.chance for r in results], y, marker="|", s=300, color="#222", zorder=3)  # chance
    for i, r in enumerate(results):
        ax.text(100 * r.test_acc + 1, i, f"{100 * r.test_acc:.1f}", va="center", fontsize=9)
    ax.set_yticks(list(y), [_label(r) for r in results])
    ax.invert_yaxis()
    ax.set_xlim(0, 108)
    ax.set_xlabel(f"test accuracy of the probe (%), task {results[0].task}")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
