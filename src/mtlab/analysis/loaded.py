"""A trained run as the analysis commands see it: the model with its weights, its data, its convolutions.

:func:`load_trained_run` rebuilds the network from a run directory (``config.yaml`` + ``checkpoint.pt``, see
:mod:`mtlab.train.rundir`) in eval mode. The picture commands then work on one *trunk* of it - one of the model's
staged trunks (``model.staged_trunks()``: the shared trunk of a multi-task or MTAN model, a per-task trunk or
cross-stitch column, an expert, a siamese branch) - and on that trunk's convolution layers, found stage by stage
(:func:`conv_layers`). A trunk may see a different input than the model (a pair model's branch sees one of the two
digit channels): :func:`trunk_inputs` asks the model itself what it feeds the trunk, so no analysis needs to know
how a model kind routes its input.

The command line's options of these analyses are parsed by :mod:`mtlab.cli.analyze`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mtlab.analysis.output import Options
from mtlab.config import load_config
from mtlab.config.schema import RunConfig
from mtlab.data.batches import Normalizer
from mtlab.data.catalog import load_dataset
from mtlab.data.split import RunSplits, carve_splits
from mtlab.data.tasks import Task
from mtlab.errors import MtlabError
from mtlab.models import MultiTaskNet, build_model
from mtlab.train.device import resolve_device
from mtlab.train.rundir import is_finished, load_checkpoint


@dataclass
class TrainedRun:
    """A finished run loaded back: ``model`` in eval mode with the checkpoint's weights, on ``device``.

    ``normalizer`` maps stored pixels to model inputs exactly as in training; ``tasks`` are the trained tasks with
    their class names; ``input_shape`` is (C, H, W) of one model input.
    """

    path: Path
    config: RunConfig
    model: MultiTaskNet
    normalizer: Normalizer
    tasks: dict[str, Task]
    input_shape: tuple[int, int, int]
    device: torch.device

    @property
    def name(self) -> str:
        return f"{self.config.name} ({self.path.name})"

    def task(self, name: str | None) -> Task:
        """The trained task ``name`` (default: the first); an unknown name is a user error."""
        if name is None:
            return next(iter(self.tasks.values()))
        if name not in self.tasks:
            raise MtlabError(f"{self.path}: unknown task {name!r}; this run was trained on {list(self.tasks)}")
        return self.tasks[name]

    def splits(self) -> tuple[dict[str, Task], RunSplits]:
        """Every task of the run's dataset, and the run's train / val / test carve (same seed, same examples)."""
        data = self.config.data
        dataset = load_dataset(data, seed=self.config.seed)
        splits = carve_splits(
            dataset,
            val_fraction=data.val_fraction,
            seed=self.config.seed,
            train_subset=data.train_subset,
            test_subset=data.test_subset,
        )
        return dataset.tasks, splits


def load_trained_run(run_dir: Path | str, device: torch.device | str = "cpu") -> TrainedRun:
    """Rebuild a run's model from ``config.yaml`` and ``checkpoint.pt`` (loaded with ``weights_only=True``)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise MtlabError(f"{path}: no such run directory")
    for name in ("config.yaml", "checkpoint.pt"):
        if not (path / name).is_file():
            raise MtlabError(f"{path}: not a finished run (no {name}); train it first with `mtlab train`")
    if not is_finished(path):
        raise MtlabError(f"{path}: not a finished run (meta.json does not say done: it stopped or failed); retrain it")
    config = load_config(path / "config.yaml")
    checkpoint = load_checkpoint(path / "checkpoint.pt", map_location="cpu")
    types = checkpoint.get("task_types", {})  # absent in runs from before typed tasks: all multiclass
    tasks = {
        t: Task(t, tuple(names), **_task_kind(types.get(t, {})))
        for t, names in checkpoint["tasks"].items()
    }
    input_shape = tuple(int(n) for n in checkpoint["input_shape"])
    try:
        model = build_model(config, tasks, input_shape)
    except KeyError:
        # Some models size outputs for tasks they were not trained on (a pair model's digit branches without the
        # auxiliary loss): their class lists come from the dataset itself.
        model = build_model(config, {**load_dataset(config.data, seed=config.seed).tasks, **tasks}, input_shape)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise MtlabError(f"{path}: checkpoint.pt does not fit the model config.yaml describes ({first})") from None
    device = torch.device(device)
    model.to(device).eval()
    norm = checkpoint["normalizer"]
    normalizer = Normalizer(norm["scale"].to(device), norm["shift"].to(device))
    return TrainedRun(path, config, model, normalizer, tasks, input_shape, device)


# ------------------------------------------------------------------------------------------- trunks, conv layers


@dataclass(frozen=True)
class ConvLayer:
    """A convolution of a trunk: its position among the trunk's convolutions, dotted ``name`` in the trunk, module."""

    index: int
    name: str
    module: nn.Conv2d

    @property
    def label(self) -> str:
        """``conv 1 (conv.0.0)``: the position (from 1) and the module path, for titles."""
        return f"conv {self.index + 1} ({self.name})"


def _task_kind(described: dict) -> dict[str, str]:
    """A recorded task description (``Task.describe()``) -> the Task fields it fixes besides the names."""
    return {"type": described.get("type", "multiclass"), "loss": described.get("loss", "mse")}


def choose_trunk(run: TrainedRun, key: str | None = None, task: str | None = None) -> tuple[str, nn.Module]:
    """The trunk named ``key``; by default the trunk of ``task`` when trunks are per task, else the shared one, else
    the first (a model without sharing has one per task or per branch: pick another with ``--trunk``)."""
    trunks = run.model.staged_trunks()
    if not trunks:
        raise MtlabError(
            f"{run.path}: a {run.config.model.sharing_label()} model has no mtlab trunk to look inside; the analysis "
            "commands read the staged trunks of mtlab's own model kinds"
        )
    if key is None:
        key = task if task in trunks else "shared" if "shared" in trunks else next(iter(trunks))
    if key not in trunks:
        raise MtlabError(f"{run.path}: no trunk {key!r}; this model's trunks are {list(trunks)}")
    return key, trunks[key]


def conv_layers(trunk: nn.Module) -> list[ConvLayer]:
    """Every ``nn.Conv2d`` of ``trunk``, stage by stage (``trunk.stage_info``, the order the stages run), each
    stage's in module registration order; named by their path in the trunk (``conv.0.0``)."""
    found = []
    for stage in getattr(trunk, "stage_info", []):
        module = trunk.get_submodule(stage.name)
        found += [(_join(stage.name, n), m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    return [ConvLayer(i, name, module) for i, (name, module) in enumerate(found)]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if name else prefix


def pick_layers(run: TrainedRun, trunk_key: str, trunk: nn.Module, wanted: Sequence[str] | None) -> list[ConvLayer]:
    """The trunk's conv layers named in ``wanted`` (positions from 1, or module names), all by default.

    A trunk without convolutions (an MLP) or an unknown layer is a user error naming what there is.
    """
    layers = conv_layers(trunk)
    if not layers:
        kind = _trunk_type(run)
        raise MtlabError(
            f"{run.path}: trunk {trunk_key!r} ({kind}) has no convolution layers; pictures need a cnn or resnet trunk"
        )
    if not wanted:
        return layers
    by_name = {layer.name: layer for layer in layers}
    picked = []
    for item in wanted:
        if item in by_name:
            picked.append(by_name[item])
        elif item.isdigit() and 1 <= int(item) <= len(layers):
            picked.append(layers[int(item) - 1])
        else:
            raise MtlabError(
                f"--layer {item}: trunk {trunk_key!r} has conv layers 1-{len(layers)}: "
                + ", ".join(layer.name for layer in layers)
            )
    return list(dict.fromkeys(picked))


def _trunk_type(run: TrainedRun) -> str:
    configs = run.config.model.trunk_configs()
    return configs[0].type if configs else run.config.model.sharing_label()


class StopForward(Exception):
    """Raised by a forward hook to end a pass once it has seen what it wanted; the caller of the pass catches it."""


def trunk_inputs(run: TrainedRun, key: str, x: Tensor) -> Tensor:
    """What the model feeds its trunk ``key`` for model inputs ``x`` (B, C, H, W): the trunk's inputs (B, c, H, W)
    (the model kind decides: a siamese branch reads one digit of each pair, every other trunk the images)."""
    return run.model.trunk_inputs(key, x)


def trunk_input_shape(run: TrainedRun, key: str) -> tuple[int, int, int]:
    """(c, H, W) of one input of trunk ``key``."""
    probe = torch.zeros(1, *run.input_shape, device=run.device)  # (1, C, H, W)
    c, h, w = trunk_inputs(run, key, probe).shape[1:]
    return (int(c), int(h), int(w))


# ------------------------------------------------------------------------------------------------- test inputs


@dataclass
class Inputs:
    """Chosen test examples: model inputs ``x`` (B, C, H, W), normalised, and a caption for each."""

    x: Tensor
    captions: list[str]
    indices: list[int]


def pick_inputs(run: TrainedRun, task: Task, indices: Sequence[int], classes: Sequence[str]) -> Inputs:
    """Test-split examples by index, then the first test example of each class (a name, or a label number).

    Captions give the index and the true class of ``task``. With neither indices nor classes: examples 0 and 1.
    """
    _, splits = run.splits()
    test = splits.test
    labels = test.labels[task.name]  # (N,)
    chosen = list(indices) if (indices or classes) else [0, 1][: len(test)]
    for index in chosen:
        if not 0 <= index < len(test):
            raise MtlabError(f"--index {index}: the run's test split has examples 0-{len(test) - 1}")
    for name in classes:
        label = class_label(task, name)
        hits = (labels == label).nonzero().flatten()
        if len(hits) == 0:
            raise MtlabError(f"--class {name}: no test example of class {task.class_names[label]!r} in this run")
        chosen.append(int(hits[0]))
    index = torch.tensor(chosen, dtype=torch.long)
    x = run.normalizer(test.images[index].to(run.device))  # (B, C, H, W) float32
    captions = [f"#{i} ({task.class_names[int(labels[i])]})" for i in chosen]
    return Inputs(x, captions, chosen)


def class_label(task: Task, name: str) -> int:
    """A class of ``task`` by name (exact, then case-insensitive) or by label number."""
    if name in task.class_names:
        return task.class_names.index(name)
    lowered = [c.lower() for c in task.class_names]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    if name.isdigit() and int(name) < task.num_classes:
        return int(name)
    raise MtlabError(
        f"--class {name}: task {task.name!r} has classes {list(task.class_names)} (or labels 0-{task.num_classes - 1})"
    )


# ---------------------------------------------------------------------------------------- command line, output


def load_from_args(args: Options) -> TrainedRun:
    return load_trained_run(args.run, resolve_device(args.device))
