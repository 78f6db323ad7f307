"""``normals``: a surface-normal direction per pixel - 1 - cosine over the valid pixels; the angular error's mean and
median, and the fraction of pixels within 11.25, 22.5 and 30 degrees.

The task of the NYUv2 multi-task benchmark (Liu et al. 2019, "End-to-End Multi-Task Learning with Attention"; the
metrics of Eigen & Fergus 2015). Outputs are maps (B, 3, H, W), any length (they are normalised here, so a network
need not end in a normalisation, and one that does - the reference SegNet - is unaffected); targets (N, 3, H, W)
float32 unit vectors, NaN in all three channels where a pixel has no normal (the datasets store the zero vector
there; their loaders turn it into NaN).

With p̂ and ŷ the output and the target scaled to unit length, cos = p̂ · ŷ (a zero output gives cos = 0, 90°):

* ``loss`` = 1 - cos, averaged over the valid pixels of the batch (all its images pooled) - the reference's
  ``1 - sum(pred * y * mask) / count(mask)``, whose targets are unit vectors already;
* the angular error of a pixel is acos(clamp(cos, -1, 1)) in degrees, computed in float64; over the valid pixels of
  the whole split: ``mean_angle``, ``median_angle``, and ``within_11_25``, ``within_22_5``, ``within_30``, the
  fraction of pixels whose error is strictly below 11.25°, 22.5° and 30° (the reference's ``error < 11.25``).

Exactness. Sums and counts are float64 / int64 totals per replica on the device. The median is exact, not read from
a histogram: every pixel's angle is kept on the device for the pass (4 bytes a pixel, float32; NYUv2's 654 test
images at 288 x 384 are 290 MB per replica) and the median is taken once at the end by selection (``kthvalue``) -
the middle value, or the mean of the two middle values for an even count (``numpy.median``). Rounding each angle to
float32 is monotone, so it commutes with taking an order statistic: the median is the float64 median rounded to
float32 (a relative error below 6e-8). A fixed histogram would only bound the median by its bin width; keeping the
values and selecting at the end is the simplest exact method, and one pass over the split is all the metric API
has. Invalid pixels are stored as +inf (sorted past every angle), which keeps the per-batch work free of host
synchronisation: no boolean indexing of a data-dependent size.

The reference code prints the mean of per-batch means and of per-batch medians; these are whole-split values.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type

THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
"""Metric name -> angle in degrees below which a pixel counts."""


@register_task_type
class Normals(TaskType):
    """Targets (N, 3, H, W) float32 unit vectors (NaN in all three channels: no normal); outputs (B, 3, H, W)."""

    name = "normals"
    metrics: ClassVar[dict[str, Direction]] = {
        "mean_angle": "min",
        "median_angle": "min",
        **dict.fromkeys(THRESHOLDS, "max"),
    }
    primary = "mean_angle"
    dense = True
    target_dtype = torch.float32

    def outputs(self, task: Task) -> int:
        return 3

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return NormalsObjective(task, len(train_targets), device)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not targets.is_floating_point() or targets.ndim != 4 or targets.shape[1] != 3:
            return f"must be a 3-vector per pixel (N, 3, H, W) floats, got {targets.dtype} of shape " + str(
                tuple(targets.shape)
            )
        if torch.isinf(targets).any():
            return "holds infinite values"
        missing = torch.isnan(targets)
        if (missing.any(1) != missing.all(1)).any():
            return "has pixels with some components NaN and some not; a pixel without a normal is NaN in all three"
        return None


def valid_pixels(targets: Tensor) -> Tensor:
    """(K, B, 3, H, W) targets -> (K, B, H, W) bool: the pixels with a normal."""
    return ~torch.isnan(targets).any(2)


def cosines(outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """cos of the angle between outputs and targets (K, B, 3, H, W) -> (K, B, H, W), in the outputs' dtype.

    Missing targets are replaced by a unit vector first, so no NaN reaches the value or its gradient."""
    y = torch.where(mask.unsqueeze(2), targets, torch.ones_like(targets)).to(outputs.dtype)
    return (F.normalize(outputs, dim=2) * F.normalize(y, dim=2)).sum(2)


class NormalsObjective(Objective):
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        mask = valid_pixels(targets)
        return masked_mean(1 - cosines(outputs, targets, mask), mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return AngleTotals(self.replicas, self.device)


class AngleTotals(MetricTotals):
    """Per replica (K,): valid pixels, Σ angle, counts below each threshold; and every angle of the pass, as a list
    of (K, B * H * W) float32 per batch with +inf at invalid pixels, for the exact median."""

    def __init__(self, replicas: int, device: torch.device):
        self.replicas = replicas
        self.count = torch.zeros(replicas, dtype=torch.long, device=device)
        self.within = torch.zeros(replicas, len(THRESHOLDS), dtype=torch.long, device=device)
        self.angle_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.limits = torch.tensor(list(THRESHOLDS.values()), dtype=torch.float64, device=device)
        self.angles: list[Tensor] = []

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        k = targets.shape[0]
        mask = valid_pixels(targets)  # (K, B, H, W)
        cos = cosines(outputs.detach().double(), targets.double(), mask)
        angle = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).reshape(k, -1)  # (K, P) float64, P = B * H * W
        valid = mask.reshape(k, -1)
        count = valid.sum(1)
        self.count += count
        self.loss_sum += loss.detach().double() * count
        self.angle_sum += torch.where(valid, angle, 0.0).sum(1)
        below = (angle[:, :, None] < self.limits) & valid[:, :, None]  # (K, P, 3)
        self.within += below.sum(1)
        self.angles.append(torch.where(valid, angle, math.inf).float())

    def medians(self) -> Tensor:
        """(K,) float64: each replica's median angle over its valid pixels (NaN with none)."""
        result = torch.full((self.replicas,), math.nan, dtype=torch.float64)
        if not self.angles:
            return result
        every = torch.cat(self.angles, 1)  # (K, total pixels), +inf at invalid ones
        for k, n in enumerate(self.count.tolist()):
            if n == 0:
                continue
            # 1-based ranks of the two middle values (the same one for an odd count).
            low = every[k].kthvalue((n + 1) // 2).values.double()
            high = every[k].kthvalue(n // 2 + 1).values.double()
            result[k] = (low + high) / 2
        return result

    def summary(self) -> dict[str, list[float]]:
        n = self.count.double()
        some = n > 0
        nan = torch.full_like(n, float("nan"))
        n = n.clamp_min(1)
        within = self.within.double() / n[:, None]
        return {
            "loss": torch.where(some, self.loss_sum / n, nan).tolist(),
            "mean_angle": torch.where(some, self.angle_sum / n, nan).tolist(),
            "median_angle": self.medians().tolist(),
            **{name: torch.where(some, within[:, i], nan).tolist() for i, name in enumerate(THRESHOLDS)},
        }
