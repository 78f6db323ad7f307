"""K copies of one network trained in lockstep, behind one small interface the training loop uses.

A study is mostly the same model under several seeds; on small models the time goes to Python and kernel-launch
overhead, not arithmetic. :class:`StackedReplicas` stacks the K models' parameters and buffers along a new leading
dimension and evaluates all of them with one ``torch.func.vmap`` over ``functional_call`` (the model-ensembling
recipe of ``torch.func``): linear layers become batched matrix products, convolutions grouped ones.

Per-replica behaviour is exact where it matters: each replica has its own parameters, batch-norm running statistics
(batched buffers, updated in place per replica), dropout masks (``randomness="different"``), gradient-norm clipping,
and - since Adam, AdamW and SGD are elementwise - its own optimiser state. :class:`SingleReplica` is the K = 1 case
on the plain module, with no vmap at all, so a solo run pays nothing for the generality.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from mtlab.config.schema import RunConfig
from mtlab.models.base import MultiTaskNet
from mtlab.weighting.jacobian import ParameterViews


class SingleReplica:
    """One model; inputs and outputs carry a leading replica dimension of size 1.

    ``channels_last`` stores conv weights and inputs channels-last (NHWC), which oneDNN and cuDNN kernels prefer;
    ``compile`` runs the model through ``torch.compile``, falling back to eager mode with a message if it fails.
    """

    def __init__(self, model: MultiTaskNet, *, channels_last: bool = False, compile: bool = False):
        self.model = model
        self.count = 1
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.compiled = torch.compile(model) if compile else None

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        x = x[0]  # (B, C, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {t: logits[None] for t, logits in self._forward(x).items()}  # (1, B, classes)

    def _forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as e:  # a backend that cannot compile this model: say so once, go on eagerly
                warnings.warn(
                    f"torch.compile failed ({type(e).__name__}: {e}); training in eager mode",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.compiled = None
        return self.model(x)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """(1, B, C, H, W) -> ``{key: (1, B, F)}``: the model's ``features`` (the first stage of a split forward)."""
        return {key: f[None] for key, f in self.model.features(x[0]).items()}

    def heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{key: (1, B, F)}`` -> ``{task: (1, B, classes)}``: the model's ``forward_heads``."""
        logits = self.model.forward_heads({key: f[0] for key, f in features.items()})
        return {t: v[None] for t, v in logits.items()}

    def parameters(self) -> list[Tensor]:
        return list(self.model.parameters())

    def named_parameters(self) -> dict[str, Tensor]:
        return dict(self.model.named_parameters())

    def buffer_tensors(self) -> list[Tensor]:
        return list(self.model.buffers())

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.model.start_epoch(epoch, epochs)

    def state(self, k: int) -> dict[str, Tensor]:
        """Replica k's state dict (detached views; copy before keeping)."""
        return {name: v.detach() for name, v in self.model.state_dict().items()}

    def load_state(self, k: int, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    def grad_norms(self) -> Tensor:
        """(1,) global L2 norm of the gradients."""
        grads = [p.grad.detach().flatten() for p in self.model.parameters() if p.grad is not None]
        return torch.cat(grads).norm()[None] if grads else torch.zeros(1)

    def scale_grads(self, factors: Tensor) -> None:
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(factors[0])


class StackedReplicas:
    """K models of identical architecture evaluated as one vmapped function; parameters are (K, ...) leaves."""

    def __init__(self, models: list[MultiTaskNet]):
        self.count = len(models)
        self.params, self.buffers = stack_module_state(models)  # {name: (K, ...)}
        # The skeleton that functional_call fills in; on the meta device it holds no memory of its own.
        self.skeleton = copy.deepcopy(models[0]).to("meta")
        self._forward = vmap(self._one, randomness="different")
        # The two stages of a split forward (features, then heads), each its own vmapped functional call.
        self._stages = {name: _Stage(self.skeleton, name) for name in ("features", "forward_heads")}
        self._staged = vmap(self._stage, in_dims=(None, 0, 0, 0), randomness="different")

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        return functional_call(self.skeleton, (params, buffers), (x,))

    def _stage(self, name: str, params: dict[str, Tensor], buffers: dict[str, Tensor], arg):
        prefixed = ({f"net.{k}": v for k, v in params.items()}, {f"net.{k}": v for k, v in buffers.items()})
        return functional_call(self._stages[name], prefixed, (arg,))

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        return self._forward(self.params, self.buffers, x)  # {task: (K, B, classes)}

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """(K, B, C, H, W) -> ``{key: (K, B, F)}``."""
        return self._staged("features", self.params, self.buffers, x)

    def heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{key: (K, B, F)}`` -> ``{task: (K, B, classes)}``."""
        return self._staged("forward_heads", self.params, self.buffers, features)

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def named_parameters(self) -> dict[str, Tensor]:
        return dict(self.params)

    def buffer_tensors(self) -> list[Tensor]:
        return list(self.buffers.values())

    def train(self, mode: bool = True) -> None:
        self.skeleton.train(mode)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.skeleton.start_epoch(epoch, epochs)  # plain attributes: the skeleton's are every replica's

    def state(self, k: int) -> dict[str, Tensor]:
        return {name: v[k].detach() for name, v in {**self.params, **self.buffers}.items()}

    def load_state(self, k: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, v in {**self.params, **self.buffers}.items():
                v[k].copy_(state[name])

    def grad_norms(self) -> Tensor:
        """(K,) global L2 gradient norm of each replica."""
        squares = [p.grad.detach().flatten(1).pow(2).sum(1) for p in self.params.values() if p.grad is not None]
        return torch.stack(squares).sum(0).sqrt()

    def scale_grads(self, factors: Tensor) -> None:
        for p in self.params.values():
            if p.grad is not None:
                p.grad.mul_(factors.view(-1, *([1] * (p.dim() - 1))))


class _Stage(nn.Module):
    """Calls one method of the wrapped network as its forward, so that ``functional_call`` can run one stage."""

    def __init__(self, net: MultiTaskNet, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, arg):
        return getattr(self.net, self.method)(arg)


def parameter_views(model: MultiTaskNet, replicas: SingleReplica | StackedReplicas) -> ParameterViews:
    """The training loop's parameter tensors (plain or stacked) split as ``model.parts()`` says (see
    :class:`~mtlab.weighting.jacobian.ParameterViews`); ``model`` is one of the replicas' modules."""
    named = replicas.named_parameters()
    shared: list[str] = []
    owned: dict[str, list[str]] = {t: [] for t in model.task_names}
    last: list[str] = []
    for part in model.parts():
        names = [f"{part.name}.{n}" for n, _ in part.module.named_parameters()]
        if len(part.tasks) > 1:
            shared += names
            layers = [n for n, m in part.module.named_modules() if next(m.parameters(recurse=False), None) is not None]
            if layers:
                prefix = f"{part.name}.{layers[-1]}." if layers[-1] else f"{part.name}."
                last += [n for n in names if n.startswith(prefix) and "." not in n[len(prefix) :]]
        else:
            (task,) = part.tasks
            owned[task] += names
    below = above_shared = None
    representation = model.representation()
    if representation is not None:
        prefix = f"{representation[1]}."
        below = [named[n] for n in named if n.startswith(prefix)]
        above_shared = [named[n] for n in shared if not n.startswith(prefix)]
    return ParameterViews(
        replicas=replicas.count,
        shared=[named[n] for n in shared],
        owned={t: [named[n] for n in names] for t, names in owned.items()},
        last_shared=[named[n] for n in last],
        below_representation=below,
        above_representation_shared=above_shared or [],
    )


def stacking_pays(config: RunConfig, device: torch.device) -> bool:
    """Whether K seeds of ``config``'s network train faster stacked (vmapped) than one after another on ``device``.

    Under ``vmap`` dense layers become batched matrix products, which run near the CPU's peak where the K small
    products of K solo runs do not (pair nets: 1.7-2.4x faster stacked). Convolutions become grouped convolutions,
    which oneDNN runs slower than the K separate ones, and small conv nets are compute-bound on a CPU already (CNN
    pair net: 0.69x stacked; ``benchmarks/README.md``). On CUDA and MPS kernel-launch overhead dominates small
    models, so stacking pays for every architecture there.
    """
    if not config.model.stackable():
        return False
    if device.type != "cpu":
        return True
    return config.model.dense_only()  # heads, gates and cross-stitch units are always dense


def channels_last_pays(config: RunConfig, device: torch.device, replicas: int = 1) -> bool:
    """Whether ``config`` trains channels-last (NHWC): as ``train.channels_last`` says, and for ``auto`` on a CPU
    for a solo conv net, where oneDNN's NHWC convolutions are faster (pair CNN on one AVX2 thread: 1.24x; the
    Fashion and CIFAR reference nets 1.40x and 1.13x; ``benchmarks/README.md``). Stacked replicas keep NCHW."""
    wanted = config.train.channels_last
    if wanted != "auto":
        return bool(wanted)
    return replicas == 1 and device.type == "cpu" and not config.model.dense_only()


def replicate(
    models: list[MultiTaskNet], *, channels_last: bool = False, compile: bool = False
) -> SingleReplica | StackedReplicas:
    """The cheapest wrapper that trains ``models`` together (memory-layout and compile options: solo runs only)."""
    if len(models) == 1:
        return SingleReplica(models[0], channels_last=channels_last, compile=compile)
    if channels_last or compile:
        warnings.warn(
            "channels_last and compile apply to solo runs; this group of seeds trains without them",
            RuntimeWarning,
            stacklevel=2,
        )
    return StackedReplicas(models)


def clip_grad_norms(replicas: SingleReplica | StackedReplicas, max_norm: float) -> None:
    """Scale each replica's gradients so that its global norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_`` does for one model: factor ``max_norm / (norm + 1e-6)`` capped at 1)."""
    factors = (max_norm / (replicas.grad_norms() + 1e-6)).clamp(max=1.0)
    replicas.scale_grads(factors)
