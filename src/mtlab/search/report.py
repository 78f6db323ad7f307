"""Write a search's results: ``trials.csv``, ``retrained.csv``, ``search.json``, figures and the report pages.

The page follows the original study's table: per depth, the best and the worst trial (parameters, maximum width,
width configuration, validation and test value of the objective's metric for the retrained network - accuracy in
the original study -, train time), then every trial. Fraction metrics (acc, f1, auroc) are shown in percent, other
metrics as they are (:mod:`mtlab.report.units`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtlab import atomic
from mtlab.report.units import format_value, is_fraction, label, metric_name, phrase, scale
from mtlab.search.run import SearchOutcome, TrialRecord


def trial_row(t: TrialRecord) -> dict[str, Any]:
    a = t.architecture
    return {
        "trial": t.number,
        "state": t.state,
        "depth": a.depth if a else None,
        "architecture": a.label if a else None,
        "max_width": a.max_width if a else None,
        "parameters": t.parameters,
        "lr": t.lr,
        "epochs": t.epochs,
        "objective": t.value,
        "seconds": round(t.seconds, 3),
        "params": json.dumps(t.params, sort_keys=True),
    }


def write_search(outcome: SearchOutcome, out: Path) -> dict[str, Path]:
    """Write every file of the search's output directory and return the main paths."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [trial_row(t) for t in outcome.trials]
    _write_csv(out / "trials.csv", rows, list(rows[0]) if rows else ["trial"])
    retrained = [asdict(r) for r in outcome.retrained]
    _write_csv(out / "retrained.csv", retrained, list(retrained[0]) if retrained else ["trial"])
    counts = {state: sum(t.state == state for t in outcome.trials) for state in ("complete", "pruned", "fail")}
    best = _best(outcome)
    summary = {
        "name": outcome.spec.name,
        "study": outcome.study_name,
        "storage": outcome.storage,
        "objective": outcome.objective,
        "direction": outcome.spec.direction,
        "trials": counts,
        "best_trial": None if best is None else trial_row(best),
        "retrained": retrained,
        "search_seconds": round(outcome.seconds, 3),
        "train_seconds": round(sum(t.seconds for t in outcome.trials), 3),
        "spec": outcome.spec.model_dump(mode="json"),
    }
    atomic.write_text(out / "search.json", json.dumps(summary, indent=2) + "\n")
    figures = _figures(outcome, out / "figures")
    blocks = _blocks(outcome, figures, counts)
    from mtlab.pages.render import to_html, to_markdown

    atomic.write_text(out / "report.md", to_markdown(blocks, out))
    atomic.write_text(out / "report.html", to_html(blocks, f"{outcome.spec.name} — mtlab search"))
    return {"html": out / "report.html", "json": out / "search.json", "trials": out / "trials.csv"}


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with atomic.replacing(path) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _best(outcome: SearchOutcome) -> TrialRecord | None:
    done = outcome.completed
    if not done:
        return None
    sign = -1.0 if outcome.spec.direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t.value, t.number))


def _fmt(value: float | None, objective: str) -> str:
    """A value of the objective's metric: percent for fractions, else four significant digits."""
    return format_value(objective, value)


def _blocks(outcome: SearchOutcome, figures: list, counts: dict[str, int]) -> list:
    from mtlab.pages.blocks import Cell, Code, Facts, Heading, Table, Text

    spec, key = outcome.spec, outcome.objective
    metric = metric_name(key)
    unit = " (%)" if is_fraction(metric) else ""
    best = _best(outcome)
    blocks = [
        Heading(f"Search {spec.name}", 1),
        Text(spec.description) if spec.description else Text(""),
        Facts(
            [
                ("Objective", f"{key} ({spec.direction})"),
                ("Trials", f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"),
                ("Best", "–" if best is None else f"trial {best.number}: {_fmt(best.value, key)}{unit[2:-1]}"),
                ("Pruner", spec.pruner.type),
                ("Train time", f"{sum(t.seconds for t in outcome.trials):.0f} s"),
                ("Seed", str(spec.seed)),
            ],
            cards=True,
        ),
        Heading("Best and worst per depth"),
    ]
    if outcome.retrained:
        task = key.split(".")[1]
        rows = [
            [
                Cell(str(r.depth)),
                Cell(r.rank, kind="text", strong=r.rank == "best"),
                Cell(str(r.trial)),
                Cell(f"{r.parameters:,}"),
                Cell(str(r.max_width)),
                Cell(r.architecture, kind="code"),
                Cell(f"{r.lr:.2g}"),
                Cell(_fmt(r.val, key)),
                Cell(_fmt(r.test, key)),
                Cell(f"{r.seconds:.1f} s"),
            ]
            for r in outcome.retrained
        ]
        blocks.append(
            Table(
                [
                    "Depth",
                    "Rank",
                    "Trial",
                    "Parameters",
                    "Max width",
                    "Width configuration",
                    "lr",
                    f"Val{unit}",
                    f"Test {task} {metric}{unit}",
                    "Train time",
                ],
                rows,
                "For each depth, the completed trial with the best and the worst validation objective, retrained "
                "from its config with the same seed and then evaluated on the test split once (the search itself "
                "never reads test results). Width configuration: units per hidden layer, or filters with kernel "
                "size (k) and max-pool (p) per convolution.",
            )
        )
    else:
        blocks.append(Text("Not retrained (no completed trial, or retraining was switched off).", muted=True))
    blocks.append(Heading("Figures"))
    blocks += figures
    blocks.append(Heading("All trials"))
    rows = [
        [
            Cell(str(t.number)),
            Cell(t.state, kind="text", strong=best is not None and t.number == best.number),
            Cell(str(t.architecture.depth) if t.architecture else "–"),
            Cell(t.architecture.label if t.architecture else "–", kind="code"),
            Cell(f"{t.parameters:,}" if t.parameters else "–"),
            Cell(f"{t.lr:.2g}" if t.lr else "–"),
            Cell(str(t.epochs)),
            Cell(_fmt(t.value, key)),
            Cell(f"{t.seconds:.1f} s"),
        ]
        for t in outcome.trials
    ]
    blocks.append(
        Table(
            ["Trial", "State", "Depth", "Width configuration", "Parameters", "lr", "Epochs", f"Val{unit}", "Time"],
            rows,
            "Val: the objective at the selected epoch for complete trials, the last reported value for pruned ones.",
        )
    )
    blocks += [
        Heading("Reproduction"),
        Text(f"Optuna storage: {outcome.storage} (study {outcome.study_name}). Run the same command to resume."),
        Heading("Search spec as run", 3),
        Code(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False), "yaml"),
    ]
    return [b for b in blocks if not (isinstance(b, Text) and not b.text)]


def _figures(outcome: SearchOutcome, out: Path) -> list:
    from matplotlib import colormaps, rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from mtlab.pages.figures import STYLE, WIDTH, save_figure

    out.mkdir(parents=True, exist_ok=True)
    key = outcome.objective
    metric = metric_name(key)
    factor = scale(metric)
    higher = outcome.spec.direction == "maximize"
    axis_label = f"{key.rsplit('.', 1)[0]}.{label(metric, higher)}"
    depths = sorted({t.architecture.depth for t in outcome.trials if t.architecture})
    cmap = colormaps["tab10"]
    color = {d: cmap(i % 10) for i, d in enumerate(depths)}
    saved = []

    def save(fig: Figure, name: str, title: str, caption: str) -> None:
        saved.append(save_figure(fig, out / f"{name}.png", title, caption))

    with rc_context(STYLE):
        fig = Figure(figsize=(WIDTH, 4.2), layout="constrained")
        left, right = fig.subplots(1, 2)
        for t in outcome.trials:
            if not t.curve or t.architecture is None:
                continue
            epochs = np.array(list(t.curve))
            values = factor * np.array(list(t.curve.values()))
            pruned = t.state != "complete"
            c = color[t.architecture.depth]
            left.plot(epochs, values, color=c, lw=1.0 if pruned else 1.8, ls=":" if pruned else "-", alpha=0.8)
            right.scatter(
                t.parameters or np.nan,
                factor * t.value if t.value is not None else values[-1],
                s=36,
                facecolors="none" if pruned else c,
                edgecolors=c,
                zorder=3,
            )
        for d in depths:
            right.scatter([], [], color=color[d], label=f"depth {d}")
        left.set_xlabel("epoch")
        left.xaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_ylabel(axis_label)
        left.set_title("Validation objective per epoch")
        right.set_xscale("log")
        right.set_xlabel("parameters (log scale)")
        right.set_title("Objective against size")
        right.legend(loc="lower right")
        save(
            fig,
            "trials",
            "Trials",
            "Left: the validation objective each trial reported after every epoch (dotted: pruned or failed trials). "
            "Right: each trial's objective against its number of parameters, coloured by depth (hollow: pruned, "
            "at the last reported value).",
        )
        if outcome.retrained:
            fig = Figure(figsize=(WIDTH * 0.6, 3.6), layout="constrained")
            ax = fig.subplots()
            for rank, marker in (("best", "o"), ("worst", "v")):
                rows = [r for r in outcome.retrained if r.rank == rank]
                ax.plot([r.depth for r in rows], [factor * r.test for r in rows], marker=marker, lw=1.5, label=rank)
                for r in rows:
                    ax.annotate(r.architecture, (r.depth, factor * r.test), fontsize=7, xytext=(4, 4),
                                textcoords="offset points")  # fmt: skip
            ax.set_xlabel("depth")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.margins(x=0.25)  # room for the labels of the last depth
            ax.set_ylabel(f"test {label(metric, higher)}")
            ax.set_title("Retrained best and worst per depth")
            ax.legend()
            save(
                fig,
                "best-worst",
                "Best and worst per depth",
                f"Test {phrase(metric)} of the best and the worst trial of each depth (chosen on validation), "
                "retrained.",
            )
    return saved
