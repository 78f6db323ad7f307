"""``mtlab analyze dream``: deep dream - amplify whatever a layer already sees in an image.

Mordvintsev, Olah & Tyka (2015), "Inceptionism: Going Deeper into Neural Networks" (and their ``deepdream``
notebook): gradient ascent on a real image x to increase the L2 norm of a layer's activations,

    maximise   E(x) = 1/2 * mean(relu(a(x))^2)      a(x): the layer's conv output (K, h, w), see :mod:`.features`

with each step normalised by the gradient's mean magnitude, ``x <- x + step_size * g / mean|g|`` (per image), and a
random roll of the image by up to ``jitter`` pixels before each gradient (undone after it; rolls drawn from the
seed). *Octaves*: the ascent runs first on the image shrunk ``octave_scale^(octaves-1)`` times, then on successively
larger versions up to full size, each starting from the current scale's image plus the detail the smaller scales
added (upsampled), so structure appears at several sizes. Images live in the trunk's normalised input space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlab import seeding
from mtlab.analysis.features import layer_outputs
from mtlab.analysis.loaded import (
    ConvLayer,
    choose_trunk,
    load_from_args,
    pick_inputs,
    pick_layers,
    trunk_inputs,
)
from mtlab.analysis.output import AnalysisOutput, Options, output_directory
from mtlab.analysis.pictures import draw_grid
from mtlab.errors import MtlabError

CLIP = 0.5  # percent of pixels at each end of the shared grey scale allowed to saturate

if TYPE_CHECKING:
    from pathlib import Path

    from mtlab.pages.blocks import Block


@dataclass(frozen=True)
class DreamSettings:
    """``steps`` ascent steps of ``step_size`` per octave; ``octaves`` scales ``octave_scale`` apart; ``jitter``."""

    steps: int = 10
    step_size: float = 0.05
    octaves: int = 2
    octave_scale: float = 1.4
    jitter: int = 1


@dataclass
class Dream:
    """Dreamed images (B, c, H, W) and each image's rectified activation norm ||relu(a)|| before and after (B,)."""

    images: Tensor
    before: Tensor
    after: Tensor


def activation_norm(trunk: nn.Module, layer: ConvLayer, x: Tensor) -> Tensor:
    """||relu(a(x))||_2 per image (B,), over the layer's channels and positions."""
    with torch.no_grad():
        a = layer_outputs(trunk, x, [layer])[layer.name]  # (B, K, h, w)
    return a.relu().flatten(1).norm(dim=1)


def dream(trunk: nn.Module, layer: ConvLayer, x: Tensor, settings: DreamSettings, seed: int = 0) -> Dream:
    """Deep-dream the trunk inputs ``x`` (B, c, H, W) on ``layer``, as the module docstring describes."""
    generator = seeding.generator(seed, f"dream/{layer.name}")
    height, width = x.shape[-2:]
    sizes = [
        (round(height / settings.octave_scale**i), round(width / settings.octave_scale**i))
        for i in reversed(range(settings.octaves))
    ]  # smallest first, (H, W) last
    for size in sizes[:-1]:
        _check_fits(trunk, layer, x[:1], size)
    detail = torch.zeros_like(_resize(x, sizes[0]))
    image = x
    for size in sizes:
        base = _resize(x, size)  # (B, c, h, w)
        image = base + _resize(detail, size)
        for _ in range(settings.steps):
            image = image + settings.step_size * _ascent_direction(trunk, layer, image, settings.jitter, generator)
        detail = image - base
    return Dream(image.detach(), activation_norm(trunk, layer, x), activation_norm(trunk, layer, image))


def _check_fits(trunk: nn.Module, layer: ConvLayer, x: Tensor, size: tuple[int, int]) -> None:
    """A user error, before any work, when an octave of ``size`` pixels cannot reach ``layer`` (pooling to nothing)."""
    try:
        activation_norm(trunk, layer, _resize(x, size))
    except RuntimeError as e:
        raise MtlabError(
            f"dream: an octave of {size[0]}x{size[1]} pixels is too small for {layer.label} "
            f"({str(e).splitlines()[0]}); use fewer --octaves or a smaller --octave-scale"
        ) from None


def _ascent_direction(
    trunk: nn.Module, layer: ConvLayer, image: Tensor, jitter: int, generator: torch.Generator
) -> Tensor:
    """dE/dx at ``image`` (B, c, h, w), rolled by a random shift and back, divided by its mean magnitude per image."""
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()  # jitter 0: no shift
    shifted = image.detach().roll((dy, dx), dims=(2, 3)).requires_grad_(True)
    a = layer_outputs(trunk, shifted, [layer])[layer.name]  # (B, K, h', w')
    energy = 0.5 * a.relu().pow(2).flatten(1).mean(1)  # (B,)
    (grad,) = torch.autograd.grad(energy.sum(), shifted)
    grad = grad.roll((-dy, -dx), dims=(2, 3))
    return grad / grad.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, c, h, w) -> (B, c, *size), bilinear; unchanged when already that size."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def settings_from_args(args: Options) -> DreamSettings:
    settings = DreamSettings(args.steps, args.step_size, args.octaves, args.octave_scale, args.jitter)
    if settings.steps < 1 or settings.step_size <= 0 or settings.octaves < 1 or settings.octave_scale <= 1:
        raise MtlabError("dream: --steps and --octaves must be at least 1, --step-size positive, --octave-scale > 1")
    if settings.jitter < 0:
        raise MtlabError("dream: --jitter must not be negative")
    return settings


def write_dream(args: Options) -> Path:
    """Everything ``mtlab analyze dream`` writes: ``dream.png`` (rows: inputs; columns: the original, then one
    dream per layer, one shared grey scale), ``dream.npz``, ``dream.csv`` (activation norms before / after),
    ``dream.json`` and the page."""
    from mtlab.pages.blocks import Facts, Heading, Text

    settings = settings_from_args(args)
    run = load_from_args(args)
    task = run.task(args.task)
    key, trunk = choose_trunk(run, args.trunk, args.task)
    layers = pick_layers(run, key, trunk, args.layer)
    inputs = pick_inputs(run, task, args.index, args.classes)
    x = trunk_inputs(run, key, inputs.x)  # (B, c, H, W)
    dreams = {layer.name: dream(trunk, layer, x, settings, args.seed) for layer in layers}

    output = AnalysisOutput(output_directory(args, run.path, "dream"), f"Deep dream — {run.name}")
    originals = x.cpu().numpy()  # (B, c, H, W)
    per_layer = {name: d.images.cpu().numpy() for name, d in dreams.items()}
    rows = [[originals[b], *(per_layer[layer.name][b] for layer in layers)] for b in range(len(originals))]
    titles = [["original", *(f"conv {layer.index + 1}\n{layer.name}" for layer in layers)] for _ in rows]
    fig = draw_grid(
        rows,
        title=f"Deep dream, trunk {key}",
        row_labels=inputs.captions,
        panel_titles=titles,
        wrap=len(layers) + 1,
        clip=CLIP,
        colorbar_label="normalised input",
    )
    numbers = [
        {
            "layer": layer.index + 1,
            "module": layer.name,
            "input": inputs.indices[b],
            "norm_before": float(dreams[layer.name].before[b]),
            "norm_after": float(dreams[layer.name].after[b]),
            "change_rms": float((dreams[layer.name].images[b].cpu() - x[b].cpu()).pow(2).mean().sqrt()),
        }
        for layer in layers
        for b in range(len(originals))
    ]
    blocks: list[Block] = [
        Heading(f"Deep dream on {run.name}", 1),
        Facts(
            [("Run", str(run.path)), ("Trunk", key), ("Inputs", ", ".join(inputs.captions)), ("Seed", str(args.seed))],
            cards=True,
        ),
        Text(
            f"Each image after {settings.steps} steps of size {settings.step_size} on each of {settings.octaves} "
            f"octave(s) ({settings.octave_scale}x apart, jitter {settings.jitter} px) of gradient ascent on the "
            "L2 norm of one layer's rectified conv output (Mordvintsev et al., 2015). Original and dreams share "
            "one grey scale (the extreme 0.5% of pixels at either end saturate)."
        ),
        Heading("Dreams"),
        output.figure(
            fig,
            "dream",
            "Deep dream",
            "Rows: inputs. Columns: the original, then the image dreamed on each conv layer.",
        ),
        Heading("Activation norms"),
        _norm_table(numbers),
    ]
    output.arrays(
        "dream", {"inputs": originals, **{f"layer{layer.index + 1}": per_layer[layer.name] for layer in layers}}
    )
    output.csv("dream", numbers)
    output.json(
        "dream",
        {
            "run": str(run.path),
            "trunk": key,
            "indices": inputs.indices,
            "seed": args.seed,
            "settings": asdict(settings),
            "layers": [layer.name for layer in layers],
        },
    )
    return output.page(blocks)


def _norm_table(numbers: list[dict]):
    from mtlab.pages.blocks import Cell, Table

    return Table(
        ["Layer", "Input", "||relu(a)|| before", "after", "Change (RMS, input units)"],
        [
            [
                Cell(f"{n['layer']} ({n['module']})", kind="code"),
                Cell(str(n["input"])),
                Cell(f"{n['norm_before']:.2f}"),
                Cell(f"{n['norm_after']:.2f}"),
                Cell(f"{n['change_rms']:.3f}"),
            ]
            for n in numbers
        ],
        "Norm of the layer's rectified activations on the original and on the dreamed image (dream.csv).",
    )
