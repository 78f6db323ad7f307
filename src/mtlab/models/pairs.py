"""The ``pairs`` model: siamese digit comparison on MNIST pairs (tasks ``leq``, ``digit_a``, ``digit_b``).

Input (B, 2, H, W) holds two grey digits. Each goes through a *branch* - a trunk built for (1, H, W) images, then
a linear layer to 10 digit logits - and the comparison head reads both branches' logits, concatenated (B, 20), to
predict whether digit a <= digit b. With ``weight_sharing`` one branch serves both images (a siamese network,
Bromley et al., 1993); without, each image has its own branch.

Loss reach: a branch is reached by its digit task and by ``leq`` (and, shared, by both digit tasks), so branches
are shared parameters; only the comparison head is ``leq``'s own, and the digit tasks own no parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, ModelKind, TrunkOptions, at, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import MultiTaskNet, Part, example_task, pick_tasks
from mtlab.models.heads import Head, TaskHead
from mtlab.models.registry import create_trunk
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, Trunk

LEQ, DIGIT_A, DIGIT_B = "leq", "digit_a", "digit_b"
DIGITS = 10
"""Digit classes a branch predicts when no digit task is trained (MNIST's)."""
SHARED = "shared"
"""Key of the single branch under weight sharing (separate branches are keyed ``a`` and ``b``)."""


def build_branch(config: TrunkOptions, image_shape: InputShape, num_digits: int) -> nn.Sequential:
    """One image (B, 1, H, W) -> digit logits (B, num_digits): ``trunk`` then a linear layer ``digits``."""
    trunk, features = create_trunk(config, image_shape)
    return nn.Sequential(OrderedDict(trunk=trunk, digits=nn.Linear(features, num_digits)))


class PairNet(MultiTaskNet):
    """Two digit branches (``branches["a"]``, ``branches["b"]``) or one shared (``branches["shared"]``), and the
    comparison ``head`` on their concatenated logits."""

    def __init__(self, config: PairModel, tasks: Mapping[str, Task], input_shape: InputShape):
        super().__init__(list(tasks))
        channels, height, width = input_shape
        if channels != 2:
            raise ValueError(f"a pair model needs inputs of 2 channels (one digit each), got shape {input_shape}")
        pick_tasks(tasks, [LEQ])  # fails early, naming the comparison task when it is missing
        # Each branch predicts the digit classes: the digit tasks' when they are trained, else MNIST's ten.
        counts = {tasks[digit].num_classes for digit in (DIGIT_A, DIGIT_B) if digit in tasks}
        if len(counts) > 1:
            raise ValueError(f"{DIGIT_A} and {DIGIT_B} must have the same classes to share a comparison head")
        num_digits = counts.pop() if counts else DIGITS
        keys = [SHARED] if config.weight_sharing else ["a", "b"]
        image_shape = (1, height, width)
        self.branches = nn.ModuleDict({key: build_branch(config.branch, image_shape, num_digits) for key in keys})
        self.head = TaskHead(2 * num_digits, config.head, tasks[LEQ].num_classes)

    def _branch(self, image: str) -> nn.Sequential:
        return self.branches[SHARED if SHARED in self.branches else image]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Pairs (B, 2, H, W) -> ``{"a": (B, F), "b": (B, F)}``, the trunk features of each image."""
        return {image: self._branch(image).trunk(x[:, i : i + 1]) for i, image in enumerate("ab")}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        a, b = x[:, 0:1], x[:, 1:2]  # (B, 1, H, W) each
        if SHARED in self.branches:
            # One pass over the 2B images: fewer kernel launches, and batch-norm (if any) sees both images.
            digits_a, digits_b = self.branches[SHARED](torch.cat([a, b])).chunk(2)  # (B, 10) each
        else:
            digits_a, digits_b = self.branches["a"](a), self.branches["b"](b)  # (B, 10) each
        leq = self.head(torch.cat([digits_a, digits_b], dim=1))  # (B, 20) -> (B, 2)
        outputs = {LEQ: leq, DIGIT_A: digits_a, DIGIT_B: digits_b}
        return {task: outputs[task] for task in self.task_names}

    def staged_trunks(self) -> dict[str, nn.Module]:
        """Branch trunks by key (``shared``, or ``a`` and ``b``); a trunk sees one image (B, 1, H, W)."""
        return {key: branch.trunk for key, branch in self.branches.items()}

    def trunk_inputs(self, key: str, x: Tensor) -> Tensor:
        """(B, 2, H, W) -> the digit branch ``key`` reads, (B, 1, H, W); the shared branch: the first digit."""
        return x[:, 1:2] if key == "b" else x[:, 0:1]

    def parts(self) -> list[Part]:
        trained = frozenset(self.task_names)
        reach = {"a": {DIGIT_A, LEQ}, "b": {DIGIT_B, LEQ}, SHARED: {DIGIT_A, DIGIT_B, LEQ}}
        parts = [Part(f"branches.{key}", branch, trained & reach[key]) for key, branch in self.branches.items()]
        parts.append(Part("head", self.head, trained & {LEQ}))
        return parts



@register_model_kind
class PairModel(ModelKind):
    """Siamese digit comparison (task ``leq``; with the auxiliary loss also ``digit_a`` and ``digit_b``).

    Each 14x14 image goes through a branch (trunk, then a linear layer to 10 digit logits); the comparison head
    reads both branches' logits (20 values). ``weight_sharing``: one branch used twice instead of two branches.
    """

    kind: Literal["pairs"]
    branch: Trunk
    head: Head = Field(default_factory=Head)
    weight_sharing: bool = False

    trunk_field: ClassVar[str] = "branch"

    reads_pairs: ClassVar[bool] = True

    def check_run(self, run: RunConfig) -> None:
        if LEQ not in run.task_names:
            raise at("tasks", "a pair model is trained on leq; add the digit tasks for the auxiliary loss")

    def sharing_label(self) -> str:
        return f"weight_sharing={self.weight_sharing}"

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> PairNet:
        """:class:`PairNet`; outputs for ``tasks`` (``leq``, and the digit tasks of the auxiliary loss), in order."""
        return PairNet(self, tasks, input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        tasks = {LEQ: example_task(LEQ, 2), DIGIT_A: example_task(DIGIT_A, 10), DIGIT_B: example_task(DIGIT_B, 10)}
        return ModelExample({"kind": "pairs", "branch": CnnTrunk.example()}, tasks, (2, 14, 14))
