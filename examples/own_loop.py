"""Any mtlab weighting method in a plain PyTorch loop (docs/own-loop.md).

Two tasks on the Fashion-MNIST sample shipped inside mtlab: the item (10 classes) and its group (shoes, gendered,
unisex). The model, the data loading and the loop are the user's; mtlab contributes one object,
``mtlab.Weighting``, which computes what the method needs, writes the gradients and keeps the method's state.

    python examples/own_loop.py --method upgrad --steps 200
    python examples/own_loop.py --method famo --steps 200
"""

from __future__ import annotations

import argparse
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

import mtlab
from mtlab.data.idx import read_idx

TASKS = ["item", "group"]
GROUPS = {"shoes": (5, 7, 9), "gendered": (3, 6, 8), "unisex": (0, 1, 2, 4)}


def fashion_sample() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The embedded sample's 3,000 training images (N, 1, 28, 28) in [0, 1] and both tasks' labels."""
    folder = resources.files("mtlab") / "embedded" / "fashion-mnist-sample"
    images = torch.from_numpy(read_idx(folder / "train-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
    items = torch.from_numpy(read_idx(folder / "train-labels-idx1-ubyte.gz")).long()
    group_of = torch.zeros(10, dtype=torch.long)
    for g, members in enumerate(GROUPS.values()):
        group_of[list(members)] = g
    return images, {"item": items, "group": group_of[items]}


class Net(nn.Module):
    """A small convolutional trunk shared by two linear heads."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({"item": nn.Linear(64, 10), "group": nn.Linear(64, len(GROUPS))})

    def forward(self, x):
        features = self.trunk(x)
        return {t: head(features) for t, head in self.heads.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="upgrad", help="a registered method (mtlab weightings)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    images, labels = fashion_sample()
    model = Net()
    steps_per_epoch = len(images) // args.batch_size
    weighting = mtlab.Weighting(
        args.method,
        tasks=TASKS,
        shared=model.trunk.parameters(),  # what the tasks share: gradient methods balance these
        last_shared=model.trunk[-2].parameters(),  # GradNorm's layer (the other methods ignore it)
        steps_per_epoch=steps_per_epoch,  # DWA and STCH update their weights once an epoch
        epochs=-(-args.steps // steps_per_epoch),  # the run's length, for a method that plans over it
        generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=1e-3)

    def batches():
        while True:  # epoch after epoch, each in a new order
            order = torch.randperm(len(images))
            for i in range(steps_per_epoch):
                chosen = order[i * args.batch_size : (i + 1) * args.batch_size]
                yield images[chosen], {t: v[chosen] for t, v in labels.items()}

    def losses_of(batch):
        x, y = batch
        out = model(x)
        return {t: F.cross_entropy(out[t], y[t]) for t in TASKS}

    train, meta = batches(), batches()  # meta: another pass over the training data (Auto-Lambda's look-ahead)
    for step in range(1, args.steps + 1):
        batch = next(train)
        weighting.look_ahead(model, optimizer, losses_of, batch, next(meta))  # a no-op but for Auto-Lambda
        optimizer.zero_grad()

        def closure(half, x=batch[0], y=batch[1]):  # MoDo and SDMGrad call it on each half of the batch
            return losses_of((half(x), {t: half(v) for t, v in y.items()}))

        if weighting.backward(closure):  # the closure form serves every method (the others: the whole batch once)
            optimizer.step()  # False: a non-finite step, skipped (counted in weighting.diagnostics())
        with torch.no_grad():
            weighting.after_step(losses_of(batch))  # FAMO's losses after the step; GradNorm's renormalisation
        if step % steps_per_epoch == 0:
            weighting.end_epoch()  # DWA, STCH
    weights = weighting.weights()
    print(f"{args.method} after {args.steps} steps: " + ", ".join(f"{t} {w:.4f}" for t, w in weights.items()))
    return weights


if __name__ == "__main__":
    main()
