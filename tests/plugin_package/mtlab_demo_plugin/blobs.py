"""Dataset ``demo-blobs``: Gaussian blobs as feature vectors, drawn from a fixed seed.

Inputs (N, 8) float32; tasks ``cluster`` (multiclass: which of 3 blobs) and ``hits`` (count: Poisson with a rate
that grows with the first feature). Options: ``examples`` per split.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtlab.config.base import DataBase, register_dataset


@register_dataset
class BlobsData(DataBase):
    dataset: Literal["demo-blobs"]
    examples: int = Field(300, gt=10, description="Examples in each of the train and test splits.")

    def task_types(self) -> dict[str, str]:
        return {"cluster": "multiclass", "hits": "count"}

    def load(self, seed: int):
        import torch

        from mtlab.data.dataset import Dataset, Split
        from mtlab.tasks import Task

        generator = torch.Generator().manual_seed(1234)  # the data never depends on the run's seed
        centers = torch.randn(3, 8, generator=generator) * 3

        def split() -> Split:
            cluster = torch.randint(0, 3, (self.examples,), generator=generator)
            x = centers[cluster] + torch.randn(self.examples, 8, generator=generator)
            hits = torch.poisson(torch.exp(0.3 * x[:, 0].clamp(-3, 3)), generator=generator)
            return Split(x, {"cluster": cluster, "hits": hits.float()})

        tasks = {"cluster": Task("cluster", ("a", "b", "c")), "hits": Task("hits", ("hits",), type="count")}
        return Dataset("demo-blobs", tasks, split(), split(), origin="generated")
