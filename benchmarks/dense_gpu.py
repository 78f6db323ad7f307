"""SegNet-MTAN on NYUv2-shaped data: stacked seeds against solo runs (equal numbers), and training images per second
of one solo run against K stacked seeds - the speed lever of the dense studies (docs/scaling.md, section 5).

Synthetic NYUv2-shaped data (uint8 images, 13-class segmentation with unlabelled pixels, depth with missing pixels,
unit normals), so it runs without the dataset. Every run goes through ``mtlab.train.fit`` with a run config whose
``train.device`` is ``--device`` (``auto``, ``cuda``, ``mps``, ``cpu``): mtlab's own device selection.

    python benchmarks/dense_gpu.py check --device cuda      # 4 seeds, small SegNet-MTAN: stacked == solo?
    python benchmarks/dense_gpu.py speed --device cuda      # full SegNet-MTAN, 288 x 384, batch 2: images/s
    python benchmarks/dense_gpu.py speed --device cpu --filters 8 --size 32x48 --images 8   # a CPU smoke run

``check`` trains 3 SGD steps per seed (Adam's first steps are sign descent, which turns rounding into whole
learning-rate steps) and prints the largest difference of the losses and errors (and the test metrics) between the
stacked and the solo runs (relative, absolute for values below 1) and exits 1 above ``--tolerance``; it also shows,
without judging, the largest difference of the pixel-count metrics (mIoU, pixel accuracy, within-angle fractions,
the median angle), which move by whole pixels when near-tied outputs differ in the last bits. ``speed`` prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from mtlab.config import parse_config
from mtlab.data.dataset import Split
from mtlab.data.split import RunSplits
from mtlab.models import build_model
from mtlab.tasks import Task
from mtlab.train.device import resolve_device
from mtlab.train.fit import fit_replicas

CLASSES = 13
TASKS = {
    "segmentation": Task("segmentation", tuple(f"c{i}" for i in range(CLASSES)), "segmentation"),
    "depth": Task("depth", ("depth",), "depth"),
    "normal": Task("normal", ("x", "y", "z"), "normals"),
}


def synthetic_split(n: int, size: tuple[int, int], seed: int) -> Split:
    """``n`` NYUv2-shaped examples: images (n, 3, H, W) uint8, targets as the nyuv2 loader gives them."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    segmentation = torch.randint(-1, CLASSES, (n, h, w), generator=g)
    depth = torch.rand(n, 1, h, w, generator=g) * 5 + 0.5
    depth[torch.rand(n, 1, h, w, generator=g) < 0.1] = math.nan
    normal = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1)
    return Split(images, {"segmentation": segmentation, "depth": depth, "normal": normal})


def config(seed: int, device: str, filters: list[int], epochs: int, batch: int, method: str = "fixed", optim="adam"):
    return parse_config(
        {
            "seed": seed,
            "data": {"dataset": "nyuv2", "val_fraction": 0.0},
            "model": {"kind": "segnet_mtan", "filters": filters},
            "loss": {"method": method},
            "optim": {"name": optim, "lr": 1e-4},
            "train": {"device": device, "epochs": epochs, "batch_size": batch, "eval_batch_size": 8},
        }
    )


def train(configs, size: tuple[int, int], images: int):
    """fit_replicas of ``configs`` (one group) on synthetic data of each config's seed."""
    device = resolve_device(configs[0].train.device)
    models, splits = [], []
    for c in configs:
        torch.manual_seed(c.seed)
        models.append(build_model(c, TASKS, (3, *size)))
        data = synthetic_split(images + 4, size, c.seed)
        train_part = Split(data.images[:images], {t: v[:images] for t, v in data.labels.items()})
        test_part = Split(data.images[images:], {t: v[images:] for t, v in data.labels.items()})
        splits.append(RunSplits(train_part, None, test_part))
    return fit_replicas(models, splits, configs, tasks=TASKS, device=device)


CONTINUOUS = ("loss", "abs_err", "rel_err", "mean_angle")
"""Values that move continuously with the weights; argmax, threshold and median metrics (miou, pixel_acc, within_*,
median_angle) jump by whole pixels when near-tied outputs differ in the last bits, so they are shown, not judged."""


def largest_difference(solo, stacked, continuous: bool) -> tuple[float, str]:
    """The largest difference, relative (absolute below 1), between solo and stacked values of the continuous
    metrics (``continuous``) or of the others."""
    worst, where = 0.0, ""
    for a, b in zip(solo, stacked, strict=True):
        pairs = [(f"test.{k}", v, b.test[k]) for k, v in a.test.items()]
        for epoch, (ra, rb) in enumerate(zip(a.history, b.history, strict=True), 1):
            pairs += [(f"epoch {epoch} {k}", v, rb[k]) for k, v in ra.items() if not k.endswith("seconds")]
        for key, x, y in pairs:
            if key.rsplit(".", 1)[-1].startswith(CONTINUOUS) != continuous or (math.isnan(x) and math.isnan(y)):
                continue
            relative = abs(x - y) / max(abs(x), 1.0)
            if relative > worst:
                worst, where = relative, key
    return worst, where


def check(args) -> int:
    size = parse_size(args.size or "64x96")
    filters = [args.filters or 8] * 5
    seeds = list(range(args.seeds))
    # SGD for a few steps: Adam's first steps are sign descent (m / sqrt(v) = g / |g|), so a gradient element near
    # zero whose sign differs by rounding moves by the whole learning rate - chaos, not a wrong replica.
    configs = [config(s, args.device, filters, epochs=1, batch=2, method=args.method, optim="sgd") for s in seeds]
    solo = [train([c], size, args.check_images)[0] for c in configs]
    stacked = train(configs, size, args.check_images)
    worst, where = largest_difference(solo, stacked, continuous=True)
    jumps, jump_where = largest_difference(solo, stacked, continuous=False)
    verdict = "PASS" if worst <= args.tolerance else "FAIL"
    device = resolve_device(args.device)
    print(
        f"stacked == solo on {device} ({len(seeds)} seeds, SegNet-MTAN filters {filters[0]}, {size[0]}x{size[1]}, "
        f"loss {args.method}): losses and errors differ by at most {worst:.2e} ({where or '-'}) -> {verdict}; "
        f"pixel-count metrics by {jumps:.2e} ({jump_where or '-'})"
    )
    return 0 if verdict == "PASS" else 1


def images_per_second(k: int, args) -> float:
    size = parse_size(args.size or "288x384")
    filters = [args.filters] * 5 if args.filters else [64, 128, 256, 512, 512]
    configs = [config(s, args.device, filters, epochs=2, batch=args.batch) for s in range(k)]
    results = train(configs, size, args.images)
    step = results[0].history[-1]["step_seconds"]  # epoch 2 (after warm-up): seconds per step and replica
    return args.batch / step  # images per second over all k replicas


def speed(args) -> int:
    device = resolve_device(args.device)
    rows = []
    base = None
    for k in (1, args.seeds):
        start = time.perf_counter()
        rate = images_per_second(k, args)
        base = base or rate
        rows.append((k, rate, rate / k, rate / base, time.perf_counter() - start))
    size = args.size or "288x384"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    model = f"filters {args.filters}" if args.filters else "44.2 M parameters"
    print(f"\nSegNet-MTAN ({model}), {size}, batch {args.batch} per seed, on {device} ({name})\n")
    print("| seeds trained together | training images/s (all seeds) | images/s per seed | vs solo | wall s |")
    print("|---|---|---|---|---|")
    for k, rate, per_seed, ratio, wall in rows:
        mode = "solo" if k == 1 else f"{k} stacked"
        print(f"| {mode} | {rate:.1f} | {per_seed:.1f} | {ratio:.2f}x | {wall:.0f} |")
    return 0


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["check", "speed"])
    parser.add_argument("--device", default="auto", help="train.device: auto, cuda, mps or cpu")
    parser.add_argument("--seeds", type=int, default=4, help="seeds stacked (check: also trained solo)")
    parser.add_argument("--images", type=int, default=16, help="speed: training images per seed")
    parser.add_argument("--check-images", type=int, default=6, help="check: training images per seed (3 steps)")
    parser.add_argument("--batch", type=int, default=2, help="batch size per seed (speed; Nash-MTL: 2)")
    parser.add_argument("--filters", type=int, default=None, help="channels of every level (default: the paper's)")
    parser.add_argument("--size", default=None, help="HxW (check: 64x96; speed: 288x384)")
    parser.add_argument("--method", default="fixed", help="weighting method of check (e.g. nash_mtl)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="check: largest relative difference allowed")
    args = parser.parse_args()
    sys.exit(check(args) if args.what == "check" else speed(args))


if __name__ == "__main__":
    main()
