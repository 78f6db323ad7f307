"""Model kind ``demo_mlp``: one shared dense layer (B, D) -> (B, hidden), then a linear head per task."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtlab.config.base import ModelExample, ModelKind, register_model_kind
from mtlab.tasks import Task


@register_model_kind
class DemoMlp(ModelKind):
    kind: Literal["demo_mlp"]
    hidden: int = Field(16, gt=0)

    def trunk_configs(self) -> list:
        return []

    def dense_only(self) -> bool:
        return True

    @classmethod
    def example(cls):
        tasks = {"cluster": Task("cluster", ("a", "b", "c")), "hits": Task("hits", ("hits",), type="regression")}
        return ModelExample({"kind": "demo_mlp", "hidden": 4}, tasks, (5,))

    def build(self, tasks, input_shape):
        """The network for ``tasks`` (the trained tasks, in order) and inputs of ``input_shape``."""
        from torch import nn

        from mtlab.models.base import MultiTaskNet, Part

        hidden = self.hidden
        names = list(tasks)

        class Net(MultiTaskNet):
            def __init__(self):
                super().__init__(names)
                self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(int(np_prod(input_shape)), hidden), nn.ReLU())
                self.heads = nn.ModuleDict({t: nn.Linear(hidden, tasks[t].outputs) for t in names})

            def features(self, x):
                return {"shared": self.trunk(x)}

            def forward(self, x):
                h = self.trunk(x)
                return {t: head(h) for t, head in self.heads.items()}

            def staged_trunks(self):
                return {}

            def parts(self):
                everyone = frozenset(names)
                return [Part("trunk", self.trunk, everyone)] + [
                    Part(f"heads.{t}", head, frozenset({t})) for t, head in self.heads.items()
                ]

        return Net()


def np_prod(shape) -> int:
    total = 1
    for d in shape:
        total *= int(d)
    return total
