"""``mtlab analyze features``: the feature maps every conv layer computes for a few chosen test images.

A layer's *activation* here, and in :mod:`.maximize` and :mod:`.dream`, is the output of its ``nn.Conv2d`` (B, K,
h, w), read with a forward hook - before the ReLU, pooling or batch-norm that follow it, so the same definition holds
for every trunk (the CNN's conv blocks and the ResNet's conv -> BN pairs alike). Maps are signed: each layer's grid
uses one red-blue scale centred on zero, and a map's red regions are where the filter responds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mtlab.analysis.loaded import (
    ConvLayer,
    StopForward,
    choose_trunk,
    load_from_args,
    pick_inputs,
    pick_layers,
    trunk_inputs,
)
from mtlab.analysis.output import AnalysisOutput, Options, output_directory
from mtlab.analysis.pictures import draw_grid

if TYPE_CHECKING:
    from pathlib import Path

    from mtlab.pages.blocks import Block


def layer_outputs(trunk: nn.Module, x: Tensor, layers: Sequence[ConvLayer]) -> dict[str, Tensor]:
    """Run ``trunk`` on its inputs ``x`` (B, c, H, W); return ``{layer name: conv output (B, K, h, w)}``.

    The pass stops once every wanted layer has run, so inputs of another size than the training images (a dream's
    smaller octaves) work as long as the convolutions up to the deepest wanted layer accept them. Gradients flow
    unless the caller disables them.
    """
    outputs: dict[str, Tensor] = {}
    wanted = {layer.name for layer in layers}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            outputs[name] = output
            if wanted <= outputs.keys():
                raise StopForward  # the layers after the wanted ones need not run

        return hook

    handles = [layer.module.register_forward_hook(keep(layer.name)) for layer in layers]
    try:
        trunk(x)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return {layer.name: outputs[layer.name] for layer in layers}


def write_features(args: Options) -> Path:
    """Everything ``mtlab analyze features`` writes: the inputs and one grid per layer (PNG), ``features.npz``
    (inputs and every map), ``features.csv`` (per map statistics), ``features.json`` and the page."""
    from mtlab.pages.blocks import Facts, Heading, Text

    run = load_from_args(args)
    task = run.task(args.task)
    key, trunk = choose_trunk(run, args.trunk, args.task)
    layers = pick_layers(run, key, trunk, args.layer)
    inputs = pick_inputs(run, task, args.index, args.classes)
    x = trunk_inputs(run, key, inputs.x)  # (B, c, H, W): what the trunk sees
    with torch.no_grad():
        maps = {name: m.cpu().numpy() for name, m in layer_outputs(trunk, x, layers).items()}  # (B, K, h, w) each

    output = AnalysisOutput(output_directory(args, run.path, "features"), f"Feature maps — {run.name}")
    blocks: list[Block] = [
        Heading(f"Feature maps of {run.name}", 1),
        Facts(
            [("Run", str(run.path)), ("Trunk", key), ("Task", task.name), ("Inputs", ", ".join(inputs.captions))],
            cards=True,
        ),
        Text(
            "Outputs of each convolution (before its activation function) for the chosen test images, on one "
            "red-blue scale per layer (red positive, blue negative). Rows are inputs; panels are channels."
        ),
    ]
    images = x.cpu().numpy()  # (B, c, H, W), normalised as the trunk sees them
    fig = draw_grid([list(images)], title="Inputs (normalised)", panel_titles=[inputs.captions], wrap=8)
    blocks += [Heading("Figures"), output.figure(fig, "inputs", "Inputs", "The test images as the trunk sees them.")]
    rows = []
    for layer in layers:
        m = maps[layer.name][:, : args.limit]  # (B, K', h, w)
        name = f"layer{layer.index + 1}"
        fig = draw_grid(
            [list(per_input) for per_input in m],
            title=f"Trunk {key}, {layer.label}: {m.shape[1]} maps of {m.shape[2]}x{m.shape[3]}",
            row_labels=inputs.captions,
            panel_titles=[[str(k) for k in range(m.shape[1])] for _ in m],
            signed=True,
            colorbar_label="conv output",
        )
        caption = f"{m.shape[1]} of {layer.module.out_channels} channels; one row (or block of rows) per input."
        blocks.append(output.figure(fig, name, layer.label, caption))
        for b, per_input in enumerate(m):
            for k, fmap in enumerate(per_input):
                rows.append(
                    {
                        "layer": layer.index + 1,
                        "module": layer.name,
                        "input": inputs.indices[b],
                        "channel": k,
                        "mean": float(fmap.mean()),
                        "max": float(fmap.max()),
                        "positive": float((fmap > 0).mean()),
                    }
                )
    output.arrays("features", {"inputs": images, **{f"layer{layer.index + 1}": maps[layer.name] for layer in layers}})
    output.csv("features", rows)
    output.json(
        "features",
        {
            "run": str(run.path),
            "trunk": key,
            "task": task.name,
            "indices": inputs.indices,
            "captions": inputs.captions,
            "layers": [layer.name for layer in layers],
        },
    )
    blocks.append(
        Text(
            "Every map is in features.npz (inputs, and one (inputs, channels, h, w) array per layer); "
            "per-map mean, maximum and positive fraction in features.csv.",
            muted=True,
        )
    )
    return output.page(blocks)
