"""``mtlab analyze filters``: convolution kernels drawn as images, one grid per conv layer.

A first-layer kernel (c, kh, kw) looks straight at the input, so it is drawn whole: grey for one input channel,
RGB for three, channels side by side otherwise. Deeper kernels read c feature maps with no natural picture, so each
filter shows its first input channel only (``--all-channels``: one row per filter, one panel per input channel).
Weights are signed: every grid uses one red-blue scale centred on zero (blue negative, red positive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtlab.analysis.loaded import (
    ConvLayer,
    choose_trunk,
    load_from_args,
    pick_layers,
)
from mtlab.analysis.output import AnalysisOutput, Options, output_directory
from mtlab.analysis.pictures import draw_grid

if TYPE_CHECKING:
    from pathlib import Path

    from mtlab.pages.blocks import Block, Table


@dataclass
class KernelGrid:
    """The panels of one layer's grid: ``rows[i][j]`` is a kernel image, ``weights`` (K, c, kh, kw) what is shown."""

    layer: ConvLayer
    weights: np.ndarray
    rows: list[list[np.ndarray]]
    row_labels: list[str] | None
    panel_titles: list[list[str]]


def kernel_grid(layer: ConvLayer, *, all_channels: bool = False, limit: int | None = None) -> KernelGrid:
    """Panels for the first ``limit`` filters of ``layer`` (all by default), as the module docstring describes."""
    weight = layer.module.weight.detach().cpu().numpy()[:limit]  # (K, c, kh, kw)
    filters = range(len(weight))
    if layer.index == 0:
        # One panel per filter, every input channel in it: (c, kh, kw) -> grey, RGB or channels side by side.
        return KernelGrid(layer, weight, [list(weight)], None, [[f"{k}" for k in filters]])
    if all_channels:
        # (K, c, kh, kw): one row per filter, one (kh, kw) panel per input channel.
        rows = [list(kernel) for kernel in weight]
        titles = [[f"in {j}" for j in range(weight.shape[1])] for _ in filters]
        return KernelGrid(layer, weight, rows, [f"filter {k}" for k in filters], titles)
    first = weight[:, :1]  # (K, 1, kh, kw): each filter's weights on input channel 0
    return KernelGrid(layer, first, [list(first)], None, [[f"{k}" for k in filters]])


def draw_kernels(grid: KernelGrid, trunk: str):
    shown = "every input channel" if grid.row_labels else ("whole kernels" if grid.layer.index == 0 else "input 0")
    return draw_grid(
        grid.rows,
        title=f"Trunk {trunk}, {grid.layer.label}: {len(grid.weights)} filters, {shown}",
        row_labels=grid.row_labels,
        panel_titles=grid.panel_titles,
        signed=True,
        colorbar_label="weight",
    )


def write_filters(args: Options) -> Path:
    """Everything ``mtlab analyze filters`` writes: a PNG per layer, ``kernels.npz``, ``filters.csv``, the page."""
    from mtlab.pages.blocks import Facts, Heading, Text

    run = load_from_args(args)
    run.task(args.task)  # an unknown task is an error even though filters need no head
    key, trunk = choose_trunk(run, args.trunk, args.task)
    layers = pick_layers(run, key, trunk, args.layer)
    output = AnalysisOutput(output_directory(args, run.path, "filters"), f"Filters — {run.name}")
    blocks: list[Block] = [
        Heading(f"Filters of {run.name}", 1),
        Facts([("Run", str(run.path)), ("Trunk", key), ("Layers", str(len(layers)))], cards=True),
        Text(
            "Kernels of each convolution, on one red-blue scale per layer (blue negative, red positive, white 0). "
            + (
                "Deeper layers show every input channel, one row per filter."
                if args.all_channels
                else "Deeper layers show each filter's weights on its first input channel."
            )
        ),
        Heading("Figures"),
    ]
    arrays, rows = {}, []
    for layer in layers:
        grid = kernel_grid(layer, all_channels=args.all_channels, limit=args.limit)
        name = f"layer{layer.index + 1}"
        fig = draw_kernels(grid, key)
        blocks.append(
            output.figure(
                fig,
                name,
                layer.label,
                f"{len(grid.weights)} of {layer.module.out_channels} filters, "
                f"kernel {tuple(layer.module.kernel_size)}, {layer.module.in_channels} input channels.",
            )
        )
        arrays[name] = grid.weights
        full = layer.module.weight.detach().cpu().numpy()[: args.limit]  # (K, c, kh, kw)
        for k, kernel in enumerate(full):
            rows.append(
                {
                    "layer": layer.index + 1,
                    "module": layer.name,
                    "filter": k,
                    "min": float(kernel.min()),
                    "max": float(kernel.max()),
                    "l2_norm": float(np.linalg.norm(kernel)),
                }
            )
    output.arrays("kernels", arrays)
    output.csv("filters", rows)
    output.json(
        "filters",
        {
            "run": str(run.path),
            "trunk": key,
            "layers": [layer.name for layer in layers],
            "all_channels": args.all_channels,
            "limit": args.limit,
        },
    )
    blocks += [Heading("Numbers"), _norm_table(rows)]
    return output.page(blocks)


def _norm_table(rows: list[dict]) -> Table:
    from mtlab.pages.blocks import Cell, Table

    by_layer: dict[tuple[int, str], list[float]] = {}
    for row in rows:
        by_layer.setdefault((row["layer"], row["module"]), []).append(row["l2_norm"])
    return Table(
        ["Layer", "Module", "Filters", "Mean kernel L2 norm", "Largest"],
        [
            [
                Cell(str(i)),
                Cell(name, kind="code"),
                Cell(str(len(n))),
                Cell(f"{np.mean(n):.3f}"),
                Cell(f"{np.max(n):.3f}"),
            ]
            for (i, name), n in by_layer.items()
        ],
        "Every kernel weight is in kernels.npz (one array per layer, as drawn); per-filter numbers in filters.csv.",
    )
