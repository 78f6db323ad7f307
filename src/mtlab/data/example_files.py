"""Your own problem, made from data mtlab ships: the embedded Fashion-MNIST sample written out as a user's files.

:func:`write_examples` writes, into one directory, what a researcher brings to mtlab and the configs that train it:

* ``fashion-table/`` - PNG images and ``labels.csv`` (one row per image) with a ``split`` column (train / val /
  test) and five targets of four task types, derived from the images and their classes:
  ``item`` (multiclass, the 10 Fashion-MNIST classes), ``footwear`` (binary: sandal, sneaker or ankle boot),
  ``ink`` (regression: the fraction of pixels above half intensity, in percent; empty for 5% of the rows - partial
  labels) and ``look`` (multilabel: ``wide``, ``tall``, ``dark`` from the image's bounding box and mean intensity);
* ``fashion.npz`` - the same images and targets as arrays (``x_train``, ``y_train_<task>``, ...);
* ``custom_net.py`` - a network of one's own (a shared CNN trunk and one head per task, sized by mtlab);
* ``table.yaml``, ``arrays.yaml``, ``custom.yaml`` and ``study.yaml`` - run configs and a study over them.

``mtlab data example DIR`` calls it; the table and arrays datasets' :meth:`example` configs and the tests use it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

FOOTWEAR = (5, 7, 9)  # sandal, sneaker, ankle boot
LOOKS = ("wide", "tall", "dark")


def _targets(images: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """Targets derived from ``images`` (N, 28, 28) uint8 and their classes ``items`` (N,)."""
    on = images > 127  # (N, 28, 28)
    columns, rows = on.any(1), on.any(2)  # (N, 28) each: which columns / rows hold ink
    width = 28 - np.argmax(columns, 1) - np.argmax(columns[:, ::-1], 1)
    height = 28 - np.argmax(rows, 1) - np.argmax(rows[:, ::-1], 1)
    darkness = images.reshape(len(images), -1).mean(1)
    looks = np.stack([width >= 24, height >= 26, darkness < np.median(darkness)], 1).astype(np.float32)
    return {
        "item": items.astype(np.int64),
        "footwear": np.isin(items, FOOTWEAR).astype(np.float32),
        "ink": (100.0 * on.reshape(len(images), -1).mean(1)).astype(np.float32),
        "look": looks,
    }


def write_examples(out: Path, train: int = 600, test: int = 200, val: int = 100) -> list[Path]:
    """Write the example files into ``out`` (created); return the configs written. Deterministic."""
    from PIL import Image

    from mtlab.data.fashion import FASHION_CLASSES, FashionData

    sample = FashionData(dataset="fashion-mnist-sample").load(0)
    rng = np.random.default_rng(0)
    pick_train = np.sort(rng.choice(len(sample.train), train + val, replace=False))
    pick_test = np.sort(rng.choice(len(sample.test), test, replace=False))
    images = np.concatenate([sample.train.images[pick_train, 0].numpy(), sample.test.images[pick_test, 0].numpy()])
    items = np.concatenate(
        [sample.train.labels["item"][pick_train].numpy(), sample.test.labels["item"][pick_test].numpy()]
    )
    split = np.array(["train"] * train + ["val"] * val + ["test"] * test)
    split[:train + val] = np.where(rng.permutation(train + val) < val, "val", "train")
    targets = _targets(images, items)
    missing_ink = rng.random(len(images)) < 0.05

    out = Path(out)
    table_dir = out / "fashion-table"
    (table_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = ["file,split,item,footwear,ink," + ",".join(LOOKS)]
    for i, image in enumerate(images):
        name = f"images/{i:04d}.png"
        Image.fromarray(image, mode="L").save(table_dir / name)
        ink = "" if missing_ink[i] else f"{targets['ink'][i]:.3f}"
        looks = ",".join(str(int(v)) for v in targets["look"][i])
        footwear = "yes" if targets["footwear"][i] else "no"
        lines.append(f"{name},{split[i]},{FASHION_CLASSES[items[i]]},{footwear},{ink},{looks}")
    (table_dir / "labels.csv").write_text("\n".join(lines) + "\n")

    arrays = {}
    ink = np.where(missing_ink, np.nan, targets["ink"]).astype(np.float32)
    for name in ("train", "val", "test"):
        rows = split == name
        arrays[f"x_{name}"] = images[rows][:, None]  # (N, 1, 28, 28) uint8
        arrays[f"y_{name}_item"] = targets["item"][rows]
        arrays[f"y_{name}_footwear"] = targets["footwear"][rows]
        arrays[f"y_{name}_ink"] = ink[rows]
        arrays[f"y_{name}_look"] = targets["look"][rows]
    np.savez_compressed(out / "fashion.npz", **arrays)

    (out / "custom_net.py").write_text(CUSTOM_NET)
    configs = {
        "table.yaml": TABLE_CONFIG,
        "arrays.yaml": ARRAYS_CONFIG,
        "custom.yaml": CUSTOM_CONFIG,
        "study.yaml": STUDY,
    }
    for name, text in configs.items():
        (out / name).write_text(text)
    return [out / name for name in configs]


# The data section every table config shares (the configs below insert it, indented to their level).
TABLE_DATA = """\
data:
  dataset: table
  path: fashion-table/labels.csv   # relative to this file
  image_column: file
  split_column: split
  tasks:
    item: {type: multiclass, column: item}
    footwear: {type: binary, column: footwear, positive: "yes"}
    ink: {type: regression, column: ink}
    look: {type: multilabel, columns: [wide, tall, dark]}
"""

TABLE_CONFIG = f"""\
# Fashion images as a user's own table: PNG files and labels.csv with four task types (see labels.csv).
#   mtlab train table.yaml
{TABLE_DATA}\
model:
  trunk: {{type: cnn, conv: [{{filters: 16, kernel: 3, pool: 2}}, {{filters: 32, kernel: 3, pool: 2}}], dense: [64]}}
train: {{epochs: 5, batch_size: 50, early_stopping: {{metric: val.ink.mae, patience: 3}}}}
"""

ARRAYS_CONFIG = """\
# The same data as arrays you already have: one .npz with x_train, x_val, x_test and y_<split>_<task>.
#   mtlab train arrays.yaml
data:
  dataset: arrays
  path: fashion.npz
  tasks:
    item: {type: multiclass}
    footwear: {type: binary}
    ink: {type: regression}
    look: {type: multilabel, classes: [wide, tall, dark]}
model:
  trunk: {type: mlp, widths: [128]}
  head: {widths: [32]}
train: {epochs: 5, batch_size: 50}
"""

CUSTOM_CONFIG = f"""\
# Your own network (custom_net.py: build(task_outputs, input_shape, **options)) on the table.
#   mtlab train custom.yaml
#   mtlab train custom.yaml loss.method=pcgrad
{TABLE_DATA}\
model:
  kind: custom
  factory: custom_net.py:build
  options: {{width: 32}}
train: {{epochs: 5, batch_size: 50}}
"""

STUDY = f"""\
# Should item, footwear, ink and look share a network, and how should their losses be weighted?
#   mtlab run study.yaml          # 3 seeds per variant; mtlab report shows MAE/RMSE with their directions
name: my-fashion-table
seeds: 3
base:
{textwrap.indent(TABLE_DATA, "  ")}\
  model:
    trunk: {{type: mlp, widths: [128]}}
    head: {{widths: [32]}}
  train: {{epochs: 5, batch_size: 50}}
variants:
  single ink:
    set: {{tasks: [ink]}}
  single item:
    set: {{tasks: [item]}}
  shared:
    grid:
      loss.method: [fixed, uncertainty, pcgrad]
control: shared, fixed
"""

CUSTOM_NET = '''"""A network of your own for mtlab: ``build(task_outputs, input_shape, **options)`` returns a module
that maps a batch (B, *input_shape) to ``{task: (B, task_outputs[task])}``. mtlab finds which parameters the tasks
share."""

from torch import nn


class TwoStageNet(nn.Module):
    def __init__(self, task_outputs: dict[str, int], input_shape: tuple[int, ...], width: int):
        super().__init__()
        channels = input_shape[0]
        self.trunk = nn.Sequential(  # shared by every task: (B, C, H, W) -> (B, 2 * width)
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({task: nn.Linear(2 * width, n) for task, n in task_outputs.items()})

    def forward(self, x):
        features = self.trunk(x)
        return {task: head(features) for task, head in self.heads.items()}


def build(task_outputs, input_shape, width: int = 32):
    return TwoStageNet(task_outputs, input_shape, width)
'''
