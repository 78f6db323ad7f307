"""The studies' reference architectures, built from config dicts: exact parameter counts and output shapes.

Counts: Linear(i, o) has i*o + o parameters, Conv2d(c, f, k) has c*f*k*k + f, BatchNorm has 2 per channel (its
running statistics are buffers, not parameters).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtlab.config import parse_config
from mtlab.data.tasks import Task
from mtlab.models import MultiTaskNet, build_model


def make_task(name: str, num_classes: int) -> Task:
    return Task(name, tuple(f"{name}{i}" for i in range(num_classes)))


PAIRS = {"leq": make_task("leq", 2), "digit_a": make_task("digit_a", 10), "digit_b": make_task("digit_b", 10)}
CIFAR = {"fine": make_task("fine", 100), "coarse": make_task("coarse", 20)}
FASHION = {"item": make_task("item", 10), "group": make_task("group", 3)}
MNIST = {"digit": make_task("digit", 10)}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------ mnist-pairs

PAIR_NETS: dict[str, tuple[dict[str, Any], list[int]]] = {
    # branch: 196*500+500 = 98,500; digits 500*10+10 = 5,010 -> 103,510.
    # head: 20*50+50 = 1,050; 50*2+2 = 102 -> 1,152.
    "shallow FC": ({"type": "mlp", "widths": [500]}, [50]),
    # branch: 59,100 + 30,100 + 7,070 + 2,130 + 620 (196-300-100-70-30-20) + 210 (digits) = 99,230.
    # head: 20*30+30 + 30*20+20 + 20*10+10 + 10*2+2 = 630 + 620 + 210 + 22 = 1,482.
    "deep FC": ({"type": "mlp", "widths": [300, 100, 70, 30, 20]}, [30, 20, 10]),
    # branch: 14x14 -> conv16 p1 (160) 14x14 -> conv32 p0 (4,640) 12x12, pool 6x6 -> conv64 p1 (18,496) 6x6
    # -> conv64 p0 (36,928) 4x4, pool 1x1 -> dense 64*100+100 = 6,500 -> digits 1,010; total 67,734.
    # head: 20*32+32 = 672; 32*2+2 = 66 -> 738.
    "CNN": (
        {
            "type": "cnn",
            "conv": [
                {"filters": 16, "kernel": 3, "padding": 1},
                {"filters": 32, "kernel": 3, "padding": 0, "pool": 2},
                {"filters": 64, "kernel": 3, "padding": 1},
                {"filters": 64, "kernel": 3, "padding": 0, "pool": 4},
            ],
            "dense": [100],
        },
        [32],
    ),
}
PAIR_COUNTS = {  # weight sharing off: two branches + head; on: one branch + head
    "shallow FC": {False: 208_172, True: 104_662},  # 2 * 103,510 + 1,152 / 103,510 + 1,152
    "deep FC": {False: 199_942, True: 100_712},  # 2 * 99,230 + 1,482 / 99,230 + 1,482
    "CNN": {False: 136_206, True: 68_472},  # 2 * 67,734 + 738 / 67,734 + 738
}


@pytest.mark.parametrize("weight_sharing", [False, True])
@pytest.mark.parametrize("net", list(PAIR_NETS))
def test_pair_nets(net, weight_sharing):
    branch, head = PAIR_NETS[net]
    raw = {"kind": "pairs", "branch": branch, "head": {"widths": head}, "weight_sharing": weight_sharing}
    model = build_model(parse_config({"data": {"dataset": "mnist-pairs"}, "model": raw}), PAIRS, (2, 14, 14))
    assert count(model) == PAIR_COUNTS[net][weight_sharing]
    out = model(torch.randn(2, 2, 14, 14))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"leq": (2, 2), "digit_a": (2, 10), "digit_b": (2, 10)}


# --------------------------------------------------------------------------------------- cifar100 / fashion hierarchy

HIERARCHY_CONV = [
    {"filters": 64},
    {"filters": 64},
    {"filters": 64, "pool": 2, "batch_norm": True},
    {"filters": 128},
    {"filters": 128, "pool": 2, "batch_norm": True},
]
HIERARCHY_HEAD = {"widths": [1024, 512, 256, 128], "dropout": 0.25, "batch_norm": True}
REUSE = ["none", "coarse->fine", "fine->coarse"]

# Trunk (3x32x32): 3*64*9+64 = 1,792; 64*64*9+64 = 36,928; 36,928 + BN 128; 64*128*9+128 = 73,856;
# 128*128*9+128 = 147,584 + BN 256 -> 297,472, output 128 x 8 x 8 = 8,192 features.
CIFAR_TRUNK = 1_792 + 36_928 + (36_928 + 128) + 73_856 + (147_584 + 256)
# Head hidden layers with BN: 8192*1024+1024 + 2048 = 8,391,680; 1024*512+512 + 1024 = 525,824;
# 512*256+256 + 512 = 131,840; 256*128+128 + 256 = 33,152 -> 9,082,496; output 128*n+n = 129n.
HIDDEN = (8_389_632 + 2_048) + (524_800 + 1_024) + (131_328 + 512) + (32_896 + 256)
FINE_HEAD, COARSE_HEAD = HIDDEN + 129 * 100, HIDDEN + 129 * 20  # 9,095,396 and 9,085,076
# Reuse joins after 1024 -> 512 (at = 2): the third layer reads 512 + n_source, so 256 * n_source more weights.
REUSE_EXTRA = {"none": 0, "coarse->fine": 256 * 20, "fine->coarse": 256 * 100}
HIERARCHY_COUNTS = {
    ("shared", "none"): 18_477_944,  # CIFAR_TRUNK + FINE_HEAD + COARSE_HEAD
    ("shared", "coarse->fine"): 18_483_064,  # + 5,120
    ("shared", "fine->coarse"): 18_503_544,  # + 25,600
    ("independent", "none"): 18_775_416,  # 2 * CIFAR_TRUNK + FINE_HEAD + COARSE_HEAD
    ("independent", "coarse->fine"): 18_780_536,
    ("independent", "fine->coarse"): 18_801_016,
}


def hierarchy_net(sharing: str, reuse: str) -> MultiTaskNet:
    raw = {
        "data": {"dataset": "cifar100"},
        "model": {
            "trunk": {"type": "cnn", "conv": HIERARCHY_CONV},
            "head": HIERARCHY_HEAD,
            "sharing": sharing,
            "reuse": reuse,
        },
    }
    return build_model(parse_config(raw), CIFAR, (3, 32, 32))


def test_hierarchy_count_arithmetic():
    assert CIFAR_TRUNK == 297_472
    assert HIDDEN == 9_082_496
    for (sharing, reuse), expected in HIERARCHY_COUNTS.items():
        trunks = 1 if sharing == "shared" else 2
        assert trunks * CIFAR_TRUNK + FINE_HEAD + COARSE_HEAD + REUSE_EXTRA[reuse] == expected


@pytest.mark.parametrize("reuse", REUSE)
@pytest.mark.parametrize("sharing", ["shared", "independent"])
def test_cifar100_hierarchy_architectures(sharing, reuse):
    model = hierarchy_net(sharing, reuse)
    assert count(model) == HIERARCHY_COUNTS[sharing, reuse]
    out = model(torch.randn(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"fine": (2, 100), "coarse": (2, 20)}
    assert all(f.shape == (2, 8 * 8 * 128) for f in model.features(torch.randn(2, 3, 32, 32)).values())
    third_layer_inputs = {task: model.heads[task].hidden[2][0].in_features for task in ("fine", "coarse")}
    expected = {"fine": 512, "coarse": 512}
    if reuse != "none":
        source, target = reuse.split("->")
        expected[target] += CIFAR[source].num_classes
    assert third_layer_inputs == expected


def test_hierarchy_trunk_on_fashion_gives_7x7x128_features():
    raw = {
        "data": {"dataset": "fashion-mnist"},
        "tasks": ["item", "group"],
        "model": {"trunk": {"type": "cnn", "conv": HIERARCHY_CONV}, "head": HIERARCHY_HEAD, "reuse": "group->item"},
    }
    model = build_model(parse_config(raw), FASHION, (1, 28, 28))
    assert model.features(torch.randn(2, 1, 28, 28))["shared"].shape == (2, 7 * 7 * 128)
    assert model.heads["item"].hidden[2][0].in_features == 512 + 3
    out = model(torch.randn(2, 1, 28, 28))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"item": (2, 10), "group": (2, 3)}


# ---------------------------------------------------------------------------------------------------- fashion-mtl


def test_fashion_mtl_two_head_cnn():
    raw = {
        "data": {"dataset": "fashion-mnist"},
        "model": {
            "trunk": {
                "type": "cnn",
                "conv": [{"filters": 32, "pool": 2}, {"filters": 64, "pool": 2}, {"filters": 128}],
                "dense": [3136],
            },
            "head": {"widths": [1024, 100]},
        },
    }
    model = build_model(parse_config(raw), FASHION, (1, 28, 28))
    # Trunk: 1*32*9+32 = 320 (28 -> pool 14); 32*64*9+64 = 18,496 (-> pool 7); 64*128*9+128 = 73,856;
    #        dense 6272*3136+3136 = 19,672,128 -> 19,764,800.
    # Heads: 3136*1024+1024 = 3,212,288; 1024*100+100 = 102,500; item 100*10+10 = 1,010, group 100*3+3 = 303.
    trunk = 320 + 18_496 + 73_856 + 19_672_128
    hidden = 3_212_288 + 102_500
    assert count(model) == trunk + (hidden + 1_010) + (hidden + 303) == 26_395_689
    out = model(torch.randn(2, 1, 28, 28))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"item": (2, 10), "group": (2, 3)}


# --------------------------------------------------------------------------------------------------- mnist-basics


@pytest.mark.parametrize(
    ("trunk", "expected"),
    [
        # 784*1000+1000 + 1000*10+10
        ({"type": "mlp", "widths": [1000]}, 795_010),
        # conv16 4x4 valid (272), 25x25 pool 4 -> 6x6x16 = 576; 576*10+10 = 5,770
        ({"type": "cnn", "conv": [{"filters": 16, "kernel": 4, "padding": "valid", "pool": 4}]}, 6_042),
        # conv32 4x4 (544) 25x25; conv64 4x4/2 (32,832) 11x11; conv128 4x4/2 (131,200) 4x4; 2048*10+10 = 20,490
        (
            {
                "type": "cnn",
                "conv": [
                    {"filters": 32, "kernel": 4, "padding": "valid"},
                    {"filters": 64, "kernel": 4, "stride": 2, "padding": "valid"},
                    {"filters": 128, "kernel": 4, "stride": 2, "padding": "valid"},
                ],
            },
            185_066,
        ),
    ],
    ids=["mlp-1000", "conv16-pool", "cnn-3-layer"],
)
def test_mnist_single_task_baselines(trunk, expected):
    model = build_model(parse_config({"data": {"dataset": "mnist"}, "model": {"trunk": trunk}}), MNIST, (1, 28, 28))
    assert count(model) == expected
    assert model(torch.randn(2, 1, 28, 28))["digit"].shape == (2, 10)
    assert not list(model.shared_parameters())
