"""The interface every mtlab network implements: a dict of task logits, and parameters split by who reaches them.

Multi-task methods that treat shared and task-specific parameters differently (gradient balancing, for instance,
operates on the shared ones: Sener & Koltun, 2018; Navon et al., 2022, ``model.shared_parameters()``) need that split
from the model, not from naming conventions. A network describes itself as :class:`Part` s - pieces of the module
tree, each with the set of tasks whose *loss gradients* reach it through the forward graph - and the split follows:

* ``shared_parameters()``: parameters of parts reached by more than one task;
* ``task_parameters(t)``: parameters of parts reached by task ``t`` alone.

Every parameter lies in exactly one part, and every part is reached by at least one task, so the groups partition
the parameters. Batch-norm running statistics are buffers, not parameters, and belong to neither group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from mtlab.tasks import Task


@dataclass(frozen=True, eq=False)
class Part:
    """A piece of a network: its dotted ``name`` in the module tree, the ``module``, and the ``tasks`` whose loss
    gradients reach its parameters."""

    name: str
    module: nn.Module
    tasks: frozenset[str]


class MultiTaskNet(nn.Module, ABC):
    """A network with one classification output per task, in ``task_names`` order."""

    def __init__(self, task_names: list[str]):
        super().__init__()
        self.task_names = list(task_names)

    @abstractmethod
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: logits (B, num_classes)}``, keys in ``task_names`` order."""

    @abstractmethod
    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The trunk outputs (B, F) the heads read, by trunk (see the subclass for the keys)."""

    @abstractmethod
    def staged_trunks(self) -> dict[str, nn.Module]:
        """The feature extractors by name, each a :class:`~mtlab.models.staged.StagedTrunk` (or a view with the same
        ``stage_info``) whose call computes, from its inputs, what it computes inside this network.

        Analysis tools find convolutions in them and hook their activations; :meth:`trunk_inputs` gives the inputs.
        """

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before each epoch (``epoch`` from 1, of ``epochs``), for networks whose
        forward pass follows a schedule (LTB's temperature); the default does nothing."""

    def trunk_inputs(self, key: str, x: Tensor) -> Tensor:
        """What staged trunk ``key`` reads for model inputs ``x`` (B, C, H, W): the inputs themselves unless the
        kind routes them (a siamese branch reads one digit)."""
        return x

    def representation(self) -> tuple[str, str] | None:
        """``(key in features(), name of the part computing it)`` when every task's head reads that one shared
        representation (what MGDA-UB balances, ``loss.gradients: representation``), else None."""
        return None

    def forward_heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """The heads on given ``features()`` output; ``forward(x) == forward_heads(features(x))`` for models that
        have a :meth:`representation`."""
        raise NotImplementedError(f"{type(self).__name__} has no shared representation to split its forward at")

    def stack_problem(self, stacked: Callable[[list[nn.Module]], nn.Module] | None = None) -> str | None:
        """Why K copies of this network cannot train as one vmapped model (one line), or None when they can.

        ``stacked`` is how the trainer stacks copies (``StackedReplicas``), for a network that only a trial can
        vouch for (the user's own, :class:`~mtlab.models.custom.CustomNet`): it tries, the trainer never asks why."""
        return None

    @abstractmethod
    def parts(self) -> list[Part]:
        """Every parameterised piece of the network, each with the tasks whose loss gradients reach it."""

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part (by part name), then the totals ``shared`` and ``task:<name>``."""
        counts = {part.name: sum(p.numel() for p in part.module.parameters()) for part in self.parts()}
        counts["shared"] = sum(p.numel() for p in self.shared_parameters())
        for task in self.task_names:
            counts[f"task:{task}"] = sum(p.numel() for p in self.task_parameters(task))
        return counts

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that the losses of more than one task reach through the forward graph."""
        for part in self.parts():
            if len(part.tasks) > 1:
                yield from part.module.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters that only ``task``'s loss reaches."""
        if task not in self.task_names:
            raise KeyError(f"no task {task!r} in this model; its tasks are {self.task_names}")
        for part in self.parts():
            if part.tasks == {task}:
                yield from part.module.parameters()


class TrunkAndHeads(MultiTaskNet):
    """A fixed network of one shared ``trunk`` (inputs -> z (B, F)) and one head per task reading z, under
    ``"shared"`` in :meth:`features` (the papers' networks built as they are, not from mtlab's trunks: Sener &
    Koltun's LeNet, Gilmer et al.'s MPNN). z is the shared representation; the trunk is every task's part."""

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__(list(heads))
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Inputs -> ``{"shared": z (B, F)}``."""
        return {"shared": self.trunk(x)}

    def forward_heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {t: head(features["shared"]) for t, head in self.heads.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_heads(self.features(x))

    def representation(self) -> tuple[str, str] | None:
        return ("shared", "trunk")

    def staged_trunks(self) -> dict[str, nn.Module]:
        return {}  # not a staged trunk; the analysis commands say so

    def parts(self) -> list[Part]:
        parts = [Part("trunk", self.trunk, frozenset(self.task_names))]
        return parts + [Part(f"heads.{t}", head, frozenset({t})) for t, head in self.heads.items()]


def pick_tasks(tasks: Mapping[str, Task], names: list[str]) -> list[Task]:
    """The :class:`Task` s named by ``names``, in that order; a name the dataset lacks is an error."""
    missing = [name for name in names if name not in tasks]
    if missing:
        raise KeyError(f"tasks {missing} are not among the dataset's tasks {list(tasks)}")
    return [tasks[name] for name in names]


def example_task(name: str, classes: int, type: str = "multiclass") -> Task:
    """Task ``name`` with ``classes`` outputs named ``name0``, ``name1``, ... (for the kinds' ``example()``)."""
    return Task(name, tuple(f"{name}{i}" for i in range(classes)), type=type)


FASHION_TASKS = {"item": example_task("item", 10), "group": example_task("group", 3)}
"""Fashion-MNIST's two tasks (item: 10 classes, group: 3), which most kinds' examples are built for."""

DENSE_TASKS = {"seg": example_task("seg", 3, type="segmentation"), "depth": Task("depth", type="depth")}
"""A segmentation task of 3 classes and a depth task, which the per-pixel kinds' examples are built for."""
