"""``mtlab analyze maximize``: activation maximisation - the input each filter (or class) responds to most.

Erhan, Bengio, Courville & Vincent (2009), "Visualizing Higher-Layer Features of a Deep Network": start from noise
and follow the gradient of one unit's activation with respect to the *input*. Here the unit is a filter k of a conv
layer with conv output a_k(x) (h, w) (see :mod:`.features`); its activation is the spatial mean of
``leaky_relu(a_k, 0.1)``, so the filter's positive responses count (a plain mean of a linear response is maximised
by a flat image) and a filter silent on the starting noise still gets a gradient. The ascent keeps the image
readable with two penalties (Simonyan, Vedaldi & Zisserman 2014 use the L2 one; total variation is from Mahendran &
Vedaldi 2015):

    maximise   J(x) = mean_hw leaky_relu(a_k(x)) - l2 * mean(x^2) - tv * (mean (dx_h)^2 + mean (dx_w)^2)

with x (c, H, W) in the trunk's normalised input space, x_0 = 0.1 * N(0, 1) noise drawn from the seed, and Adam
steps of size ``lr`` on -J. Every filter of a layer is one image of a batch: the model is in eval mode, so images
do not interact and the batch is just K independent ascents. With ``--classes`` the same ascent maximises each class
logit of the ``--task`` head instead (Simonyan et al., 2014, class model visualisation), through the whole model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlab import seeding
from mtlab.analysis.features import layer_outputs
from mtlab.analysis.loaded import (
    ConvLayer,
    TrainedRun,
    choose_trunk,
    load_from_args,
    pick_layers,
    trunk_input_shape,
)
from mtlab.analysis.output import AnalysisOutput, Options, output_directory
from mtlab.analysis.pictures import draw_grid
from mtlab.errors import MtlabError

if TYPE_CHECKING:
    from pathlib import Path

    from mtlab.pages.blocks import Block

NOISE = 0.1  # standard deviation of the starting noise, in normalised input units
LEAK = 0.1  # slope of the activation below zero


@dataclass(frozen=True)
class AscentSettings:
    """How the ascent runs: Adam ``steps`` of size ``lr``, penalty weights ``l2`` and ``tv`` (see the module)."""

    steps: int = 200
    lr: float = 0.05
    l2: float = 0.05
    tv: float = 0.5


@dataclass
class Ascent:
    """The maximising images (N, c, H, W), and the objective's unpenalised value per image before and after (N,)."""

    images: Tensor
    before: Tensor
    after: Tensor


def ascend(objective: Callable[[Tensor], Tensor], x0: Tensor, settings: AscentSettings) -> Ascent:
    """Gradient ascent on images ``x0`` (N, c, H, W) of ``objective`` (images -> (N,) scores), L2 / TV penalised.

    Only the input is differentiated (``torch.autograd.grad``): the network's parameters are left untouched.
    """
    x = x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr)
    with torch.no_grad():
        before = objective(x0).detach()
    for _ in range(settings.steps):
        score = objective(x)  # (N,)
        penalty = settings.l2 * x.pow(2).mean((1, 2, 3)) + settings.tv * total_variation(x)  # (N,)
        (grad,) = torch.autograd.grad(-(score - penalty).sum(), x)
        x.grad = grad
        optimizer.step()
    with torch.no_grad():
        after = objective(x).detach()
    return Ascent(x.detach(), before, after)


def total_variation(x: Tensor) -> Tensor:
    """Squared total variation per image: mean squared difference of vertical and horizontal neighbours (N,)."""
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]  # (N, c, H-1, W)
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]  # (N, c, H, W-1)
    return dh.pow(2).mean((1, 2, 3)) + dw.pow(2).mean((1, 2, 3))


def start_noise(count: int, shape: tuple[int, int, int], seed: int, stream: str, device: torch.device) -> Tensor:
    """Seeded starting noise (count, c, H, W), drawn on the CPU so every device starts from the same images."""
    generator = seeding.generator(seed, stream)
    return (NOISE * torch.randn(count, *shape, generator=generator)).to(device)


def maximize_filters(
    trunk: nn.Module,
    layer: ConvLayer,
    shape: tuple[int, int, int],
    filters: Sequence[int],
    settings: AscentSettings,
    seed: int = 0,
) -> Ascent:
    """One image (c, H, W) per filter of ``layer`` in ``filters``, maximising that filter's activation."""
    device = layer.module.weight.device
    index = torch.as_tensor(list(filters), device=device)  # (N,)

    def mean_activation(x: Tensor) -> Tensor:
        a = layer_outputs(trunk, x, [layer])[layer.name]  # (N, K, h, w)
        a = a[torch.arange(len(index), device=device), index]  # (N, h, w): image n -> filter index[n]
        return F.leaky_relu(a, LEAK).mean((1, 2))  # (N,)

    return ascend(mean_activation, start_noise(len(index), shape, seed, f"maximize/{layer.name}", device), settings)


def maximize_classes(run: TrainedRun, task: str, settings: AscentSettings, seed: int = 0) -> Ascent:
    """One model input (C, H, W) per class of ``task``, maximising that class's logit of the task's head."""
    classes = run.task(task).num_classes

    def logit(x: Tensor) -> Tensor:
        return run.model(x)[task].diagonal()  # (N, classes) -> (N,): image n -> class n

    return ascend(logit, start_noise(classes, run.input_shape, seed, f"maximize/{task}", run.device), settings)


def write_maximize(args: Options) -> Path:
    """Everything ``mtlab analyze maximize`` writes: a grid per layer (and per task with ``--classes``) as PNG,
    the images in ``maximize.npz``, the objective before / after per image in ``maximize.csv``, and the page."""
    from mtlab.pages.blocks import Facts, Heading, Text

    if args.steps < 1 or args.lr <= 0 or args.l2 < 0 or args.tv < 0:
        raise MtlabError("maximize: --steps must be at least 1, --lr positive, --l2 and --tv not negative")
    run = load_from_args(args)
    task = run.task(args.task)
    key, trunk = choose_trunk(run, args.trunk, args.task)
    layers = pick_layers(run, key, trunk, args.layer)
    shape = trunk_input_shape(run, key)
    settings = AscentSettings(args.steps, args.lr, args.l2, args.tv)

    output = AnalysisOutput(output_directory(args, run.path, "maximize"), f"Activation maximisation — {run.name}")
    blocks: list[Block] = [
        Heading(f"Activation maximisation on {run.name}", 1),
        Facts(
            [("Run", str(run.path)), ("Trunk", key), ("Steps", str(settings.steps)), ("Seed", str(args.seed))],
            cards=True,
        ),
        Text(
            "Each panel is the input that maximises one filter's mean (leaky-rectified) conv output, found by "
            f"{settings.steps} Adam steps (step {settings.lr}) from seeded noise, penalised by {settings.l2} x mean "
            f"squared pixel and {settings.tv} x squared total variation (Erhan et al., 2009). One grey scale per "
            "grid; the number over a panel is its filter."
        ),
        Heading("Figures"),
    ]
    arrays, rows = {}, []
    for layer in layers:
        filters = list(range(min(args.limit, layer.module.out_channels)))
        ascent = maximize_filters(trunk, layer, shape, filters, settings, args.seed)
        name = f"layer{layer.index + 1}"
        blocks.append(
            _section(
                output,
                ascent,
                name,
                f"Trunk {key}, {layer.label}",
                [str(k) for k in filters],
                f"{len(filters)} of {layer.module.out_channels} filters.",
            )
        )
        arrays[name] = ascent.images.cpu().numpy()
        rows += _rows(ascent, layer.name, [str(k) for k in filters])
    if args.classes:
        classes = list(task.class_names)
        ascent = maximize_classes(run, task.name, settings, args.seed)
        name = f"classes-{task.name}"
        blocks.append(
            _section(
                output,
                ascent,
                name,
                f"Classes of task {task.name}",
                classes,
                f"Inputs maximising each class logit of the {task.name} head, through the whole model.",
            )
        )
        arrays[name] = ascent.images.cpu().numpy()
        rows += _rows(ascent, f"head {task.name}", classes)
    output.arrays("maximize", arrays)
    output.csv("maximize", rows)
    output.json(
        "maximize",
        {
            "run": str(run.path),
            "trunk": key,
            "task": task.name,
            "seed": args.seed,
            "settings": asdict(settings),
            "layers": [layer.name for layer in layers],
        },
    )
    return output.page(blocks)


def _section(output: AnalysisOutput, ascent: Ascent, name: str, title: str, labels: list[str], caption: str) -> Block:
    """Draw one grid of maximising images, save it, and return its page block."""
    images = ascent.images.cpu().numpy()  # (N, c, H, W)
    fig = draw_grid(
        [list(images)],
        title=title,
        panel_titles=[labels],
        wrap=8 if len(images) <= 16 else 16,
        colorbar_label="normalised input",
    )
    gain = (ascent.after - ascent.before).mean().item()
    caption += f" Mean objective {ascent.before.mean().item():.3g} -> {ascent.after.mean().item():.3g} ({gain:+.3g})."
    return output.figure(fig, name, title, caption)


def _rows(ascent: Ascent, unit: str, labels: list[str]) -> list[dict]:
    return [
        {"unit": unit, "target": label, "before": float(b), "after": float(a), "rms": float(x.pow(2).mean().sqrt())}
        for label, b, a, x in zip(labels, ascent.before, ascent.after, ascent.images, strict=True)
    ]
