"""The papers' networks: SegNet, SegNet-MTAN, the torchvision-layout ResNets and the DeepLab (ASPP) model.

Parameter counts are checked against the reference implementations' totals (Nash-MTL's / FAMO's ``SegNet`` and
``SegNetMtan`` instantiated, torchvision's documented ResNet sizes); the forward of ``segnet`` / ``segnet_mtan`` was
checked equal to the reference's, weight for weight, when this module was written (the reference code is not
vendored here). Stacked replicas are checked against solo models, forward and backward.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter
from torch import nn

from mtlab.config import parse_config
from mtlab.config.schema import Trunk
from mtlab.errors import ConfigError
from mtlab.models import build_model, create_trunk
from mtlab.models.deeplab import DeepLabModel, DeepLabNet
from mtlab.models.imagenet_resnet import ImageNetResNetTrunk, build_imagenet_resnet, load_torchvision_state
from mtlab.models.segnet import SegNetNet, unpool
from mtlab.tasks import Task
from mtlab.train.replicas import StackedReplicas
from test_models import assert_partition, loss_reach

PAPER_FILTERS = [64, 128, 256, 512, 512]
NYUV2_OUTPUTS = {"segmentation": 13, "depth": 1, "normals": 3}
CITYSCAPES_OUTPUTS = {"segmentation": 7, "depth": 1}


pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: fastest on one thread


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------------- SegNet


@pytest.mark.parametrize(
    ("attention", "outputs", "expected"),
    [
        (True, NYUV2_OUTPUTS, 44_229_073),  # Nash-MTL experiments/nyuv2/models.py SegNetMtan(): "about 44 M"
        (False, NYUV2_OUTPUTS, 25_055_185),  # ... SegNet()
        (True, CITYSCAPES_OUTPUTS, 41_206_984),  # FAMO experiments/cityscapes/models.py SegNetMtan()
        (False, CITYSCAPES_OUTPUTS, 25_017_672),  # ... SegNet()
    ],
)
def test_segnet_parameter_counts_equal_the_reference_implementations(attention, outputs, expected):
    model = SegNetNet(PAPER_FILTERS, outputs, (3, 288, 384), attention=attention)
    assert count(model) == expected


def test_unpool_is_max_unpool():
    x = torch.randn(2, 3, 8, 12)
    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(unpool(pooled, indices, x.shape[-2:]), F.max_unpool2d(pooled, indices, 2, 2))


@pytest.mark.parametrize("attention", [False, True])
def test_segnet_outputs_maps_and_partitions_as_autograd_reaches(attention):
    model = SegNetNet([4, 6, 8], NYUV2_OUTPUTS, (3, 16, 24), attention=attention)
    out = model(torch.randn(2, 3, 16, 24))
    assert {t: tuple(o.shape) for t, o in out.items()} == {t: (2, n, 16, 24) for t, n in NYUV2_OUTPUTS.items()}
    assert_partition(model)
    reach = loss_reach(model, torch.randn(2, 3, 16, 24))
    shared = {id(p) for p in model.shared_parameters()}
    for p in model.parameters():
        assert (len(reach[id(p)]) > 1) == (id(p) in shared)
    for task in model.task_names:
        assert all(reach[id(p)] == {task} for p in model.task_parameters(task))
    if attention:  # each task's attention is its own, the f blocks are shared
        assert {id(p) for p in model.attention["depth"].parameters()} <= {id(p) for p in model.task_parameters("depth")}
        assert {id(p) for p in model.shared["encoder_att_block"].parameters()} <= shared


def test_segnet_refuses_images_its_pooling_cannot_halve():
    with pytest.raises(ConfigError, match=r"model\.filters: 3 levels .* divisible by 8, not \(3, 12, 24\)"):
        SegNetNet([4, 4, 4], {"depth": 1}, (3, 12, 24), attention=False)


def stacked_equals_solo(models: list[nn.Module], x: torch.Tensor) -> None:
    """K models stacked under vmap give each model's own outputs and gradients (batch norm in training mode)."""
    stacked = StackedReplicas(models)
    out = stacked(x.expand(len(models), *x.shape))
    loss = sum(o.square().mean(dim=tuple(range(1, o.dim()))).sum() for o in out.values())
    loss.backward()
    for k, model in enumerate(models):
        solo = model(x)
        for task, value in solo.items():
            torch.testing.assert_close(out[task][k], value, rtol=1e-4, atol=1e-5)
        sum(o.square().mean() for o in solo.values()).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(stacked.params[name].grad[k], p.grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("attention", [False, True])
def test_segnet_stacked_seeds_equal_solo_models(attention):
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(SegNetNet([4, 6], NYUV2_OUTPUTS, (3, 8, 12), attention=attention))
    stacked_equals_solo(models, torch.randn(3, 3, 8, 12))


# ------------------------------------------------------------------------------------------------ ImageNet ResNets


def resnet(depth: int, output_stride: int = 32, shape=(3, 224, 224), **extra: Any):
    config = ImageNetResNetTrunk(type="imagenet_resnet", depth=depth, output_stride=output_stride, **extra)
    return build_imagenet_resnet(config, shape)


@pytest.mark.parametrize(
    ("depth", "torchvision_total"),
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)],
)
def test_resnet_parameter_counts_equal_torchvisions(depth, torchvision_total):
    trunk, width = resnet(depth)
    fc = width * 1000 + 1000  # torchvision's classifier, which the trunk leaves out
    assert count(trunk) + fc == torchvision_total


def torchvision_keys(trunk: nn.Module) -> dict[str, torch.Tensor]:
    """The trunk's state under torchvision's key names (``conv1.*``, ``bn1.*`` at the top), with a classifier."""
    state = {k.removeprefix("stem."): v.clone() for k, v in trunk.state_dict().items()}
    width = trunk.out_features
    return {**state, "fc.weight": torch.zeros(1000, width), "fc.bias": torch.zeros(1000)}


def test_resnet50_has_torchvisions_key_names_and_shapes():
    state = torchvision_keys(resnet(50)[0])
    known = {  # torchvision resnet50 state dict entries
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.num_batches_tracked": (),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
    }
    assert {k: tuple(state[k].shape) for k in known} == known
    assert len([k for k in state if k.endswith("num_batches_tracked")]) == 53  # every BN of ResNet-50


def test_a_torchvision_state_dict_file_loads(tmp_path):
    torch.manual_seed(0)
    source, _ = resnet(18, shape=(3, 32, 32))
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_keys(source), path)
    torch.manual_seed(1)
    loaded, _ = resnet(18, shape=(3, 32, 32), weights=path)
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    state = torchvision_keys(source)
    state["layer5.0.conv1.weight"] = state.pop("layer4.1.conv2.weight")  # a file of another architecture
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"model\.trunk\.weights: .* does not fit this ResNet \(missing"):
        load_torchvision_state(loaded, path)
    with pytest.raises(ConfigError, match="not found"):
        resnet(18, weights=tmp_path / "missing.pth")


def test_dilated_resnet50_keeps_output_stride_8_as_libmtl():
    trunk, _ = resnet(50, output_stride=8, shape=(3, 64, 96))
    assert [s.shape for s in trunk.stage_info] == [(64, 16, 24), (256, 16, 24), (512, 8, 12), (1024, 8, 12),
                                                   (2048, 8, 12)]  # fmt: skip
    # layer3 / layer4: the first block keeps the previous dilation (1 / 2), the others double it (2 / 4)
    assert trunk.layer3[0].conv2.dilation == (1, 1)
    assert trunk.layer3[1].conv2.dilation == (2, 2)
    assert trunk.layer4[0].conv2.dilation == (2, 2)
    assert trunk.layer4[2].conv2.dilation == (4, 4)
    assert trunk.layer4[0].conv2.stride == (1, 1)
    assert trunk.layer4[0].downsample[0].stride == (1, 1)
    trunk.eval()
    assert [tuple(o.shape[1:]) for o in trunk.forward_stages(torch.randn(1, 3, 64, 96))] == [
        s.shape for s in trunk.stage_info
    ]


def test_imagenet_resnet_is_a_trunk_type_for_every_headed_kind():
    config = TypeAdapter(Trunk).validate_python({"type": "imagenet_resnet", "depth": 18})
    trunk, width = create_trunk(config, (3, 64, 64))
    assert width == 512
    assert trunk(torch.randn(2, 3, 64, 64)).shape == (2, 512)


# ------------------------------------------------------------------------------------------------------- DeepLab


def deeplab(outputs=NYUV2_OUTPUTS, shape=(3, 288, 384), **options: Any) -> DeepLabNet:
    config = DeepLabModel(kind="deeplab", **options)
    return DeepLabNet(config, outputs, shape)


def test_deeplab_parameter_count_by_hand():
    model = deeplab()
    encoder = 25_557_032 - (2048 * 1000 + 1000)  # torchvision ResNet-50 without its classifier
    bn = 2 * 256  # a BN's weight and bias
    aspp = (2048 * 256 + bn) + 3 * (2048 * 256 * 9 + bn) + (2048 * 256 + bn) + (5 * 256 * 256 + bn)
    head = aspp + (256 * 256 * 9 + bn)
    assert count(model.encoder) == encoder
    for task, n in NYUV2_OUTPUTS.items():
        assert count(model.heads[task]) == head + 256 * n + n


def test_deeplab_upsamples_each_head_to_the_input_and_stacks():
    small = {"encoder": {"type": "imagenet_resnet", "depth": 18, "output_stride": 8}, "channels": 8, "rates": [1, 2]}
    model = deeplab(CITYSCAPES_OUTPUTS, (3, 32, 48), **small)
    out = model(torch.randn(2, 3, 32, 48))
    assert {t: tuple(o.shape) for t, o in out.items()} == {"segmentation": (2, 7, 32, 48), "depth": (2, 1, 32, 48)}
    assert_partition(model)
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.encoder.parameters()}
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(deeplab(CITYSCAPES_OUTPUTS, (3, 32, 48), **small, dropout=0.0).eval())
    stacked_equals_solo(models, torch.randn(2, 3, 32, 48))


# ------------------------------------------------------------------------------------------------------- configs


def arrays_config(model: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    classes = {"classes": ["a", "b"]}
    tasks = {t: {"type": kind, **(classes if kind == "segmentation" else {})} for t, kind in types.items()}
    return {"data": {"dataset": "arrays", "path": "x.npz", "tasks": tasks}, "model": model}


@pytest.mark.parametrize("kind", ["segnet", "segnet_mtan", "deeplab"])
def test_dense_kinds_build_from_a_config_and_refuse_per_example_tasks(kind):
    dense = {"seg": "segmentation", "depth": "depth"}
    model: dict[str, Any] = {"kind": kind}
    if kind == "deeplab":
        model.update(encoder={"type": "imagenet_resnet", "depth": 18}, channels=4)
    else:
        model.update(filters=[4, 4])
    config = parse_config(arrays_config(model, dense))
    tasks = {"seg": Task("seg", ("a", "b"), type="segmentation"), "depth": Task("depth", type="depth")}
    net = build_model(config, tasks, (3, 16, 16))
    assert {t: tuple(o.shape) for t, o in net(torch.randn(2, 3, 16, 16)).items()} == {
        "seg": (2, 2, 16, 16),
        "depth": (2, 1, 16, 16),
    }
    with pytest.raises(ConfigError, match=r"model\.kind: .* tasks \['age'\] are not per-pixel tasks"):
        parse_config(arrays_config(model, {**dense, "age": "regression"}))


def test_per_example_kinds_refuse_dense_tasks():
    raw = arrays_config({"trunk": {"type": "mlp"}}, {"seg": "segmentation", "age": "regression"})
    with pytest.raises(ConfigError, match=r"model\.kind: tasks \['seg'\] predict a map per pixel"):
        parse_config(raw)


# ------------------------------------------------------------------------------------------ double sampling


@pytest.mark.parametrize("method", ["modo", "sdmgrad"])
def test_a_double_sampling_method_never_gets_a_one_image_half_from_the_last_batch(method):
    """7 images in batches of 4 leave 3, whose halves would be 1 and 2 images: DeepLab's image-pooling batch norm
    refuses one value per channel. The 3 are merged into the batch before (halves of 3 and 4 images)."""
    from mtlab.data.dataset import Split
    from mtlab.data.split import RunSplits
    from mtlab.train.fit import fit

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
        seg = torch.randint(0, 2, (n, 16, 16), generator=g).to(torch.int16)
        depth = torch.rand((n, 1, 16, 16), generator=g) + 0.5
        return Split(images, {"seg": seg, "depth": depth})

    raw = arrays_config(
        {"kind": "deeplab", "encoder": {"type": "imagenet_resnet", "depth": 18}, "channels": 4, "rates": [1]},
        {"seg": "segmentation", "depth": "depth"},
    )
    config = parse_config({**raw, "loss": {"method": method}, "train": {"epochs": 1, "batch_size": 4}})
    tasks = {"seg": Task("seg", ("a", "b"), type="segmentation"), "depth": Task("depth", type="depth")}
    torch.manual_seed(0)
    net = build_model(config, tasks, (3, 16, 16))
    result = fit(net, RunSplits(train=split(7), val=None, test=split(2)), config, tasks=tasks,
                 device=torch.device("cpu"))
    assert len(result.history) == 1
