"""Any mtlab weighting method in a Lightning module (docs/own-loop.md, "Lightning"; pip install 'mtlab[lightning]').

The same two tasks and network as ``examples/own_loop.py`` (the Fashion-MNIST sample shipped inside mtlab: the item
and its group), as a ``LightningModule`` that returns its task losses; ``mtlab.lightning.MTLModule`` runs the
method's hooks, steps the optimiser, logs the task weights and keeps the method's state in Lightning's checkpoints.

    python examples/lightning_loop.py --method upgrad --steps 200
    python examples/lightning_loop.py --method auto_lambda --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import lightning
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import mtlab
from mtlab.lightning import MTLModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_loop import TASKS, Net, fashion_sample  # the same data and network as the plain loop


class TwoTasks(MTLModule):
    def __init__(self, method: str, seed: int, meta: DataLoader):
        super().__init__()
        self.method, self.seed, self.meta = method, seed, meta
        self.net = Net()
        self.meta_batches = None

    def configure_weighting(self, steps_per_epoch, epochs):  # when Lightning knows the run's length
        return mtlab.Weighting(
            self.method,
            tasks=TASKS,
            shared=self.net.trunk.parameters(),  # what the tasks share: gradient methods balance these
            last_shared=self.net.trunk[-2].parameters(),  # GradNorm's layer (the other methods ignore it)
            steps_per_epoch=steps_per_epoch,  # DWA and STCH update their weights once an epoch
            epochs=epochs,  # the run's length, for a method that plans over it
            generator=torch.Generator().manual_seed(self.seed),
        )

    def task_losses(self, batch):  # {task: loss}; under double sampling called on each half of the batch
        x, item, group = batch
        out = self.net(x)
        return {"item": F.cross_entropy(out["item"], item), "group": F.cross_entropy(out["group"], group)}

    def meta_batch(self, batch, batch_idx):  # Auto-Lambda's look-ahead: another pass over the training data
        if self.meta_batches is None:
            self.meta_batches = itertools.chain.from_iterable(itertools.repeat(self.meta))  # pass after pass
        return next(self.meta_batches)

    def configure_optimizers(self):
        return torch.optim.Adam([*self.net.parameters(), *self.weighting.parameters()], lr=1e-3)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="upgrad", help="a registered method (mtlab weightings)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    images, labels = fashion_sample()
    data = TensorDataset(images, labels["item"], labels["group"])

    def loader(stream: int) -> DataLoader:  # each pass in a new order, drawn from a seeded generator
        order = RandomSampler(data, generator=torch.Generator().manual_seed(args.seed + stream))
        return DataLoader(data, batch_size=args.batch_size, sampler=order, drop_last=True)

    module = TwoTasks(args.method, args.seed, meta=loader(1))
    trainer = lightning.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader(0))
    weights = module.weighting.weights()
    print(f"{args.method} after {args.steps} steps: " + ", ".join(f"{t} {w:.4f}" for t, w in weights.items()))
    return weights


if __name__ == "__main__":
    main()
