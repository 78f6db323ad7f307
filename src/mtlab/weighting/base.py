"""How per-task losses become one update: the two kinds of weighting method and their registry.

A method is composed into the training loop, never mixed into the model (DESIGN.md; after TorchJD's aggregators and
nash-mtl's ``get_weighted_loss``). Every method is a small ``nn.Module`` built for K stacked replicas (K = 1 for a
solo run): its learnable parameters and state tensors all carry a leading replica dimension, so replica k of a
stacked run holds exactly what a solo run of seed k would, and Adam (elementwise) keeps them independent.

* :class:`LossMethod` (``step = "scalar"``): per-replica task losses (K, T) -> objective (K,), back-propagated once.
* :class:`GradientMethod` (``step = "jacobian"``): per-task gradients of the shared parameters, a Jacobian
  (K, T, P), and its Gramian (K, T, T) -> the update (K, P) written to the shared parameters' ``.grad``; task-owned
  parameters keep their own task's gradient. :class:`GramianMethod` is the common case of an update that is a
  weighted sum of the task gradients, with weights computed from the Gramian alone.

The loop picks its step strategy from ``method.step`` once, before the first epoch; it never looks at a method's
name. Hooks with no-op defaults say what else a method needs: ``bind`` (the model's parameter views, for methods that
look at "the last shared layer"), ``plan`` (the run's epochs and steps per epoch), ``after_step`` (with the losses
after the step on the same batch when ``needs_losses_after_step``), ``after_epoch`` (epoch-mean training losses),
and ``look_ahead`` for bilevel methods (``needs_meta_batch``): before each step the loop draws a *meta batch* from
the training split - a second pass over it in an order of its own, never the validation or test split - and hands
the method a :class:`LookAhead`
probe: the task losses of the step's batch or of the meta batch at temporarily moved parameters, their gradients,
and the virtual step the run's optimiser would take. With that the method can unroll one step and differentiate a
meta objective through it (Auto-Lambda) without the loop knowing which method it runs. A gradient method may also
declare ``samples = 2`` (two independent halves of each batch: double sampling) and transform the task losses before
they are differentiated (``task_objectives``: log-losses, learned loss scales).

Options: each method declares a typed :class:`MethodOptions` subclass whose ``method`` literal is its registered
name; :mod:`mtlab.weighting.catalog` gathers them into the ``loss`` section's tagged union. ``weights`` belongs to
every method: constant per-task multipliers applied to the task losses before the method sees them (``fixed`` is
exactly the weighted sum; for the others they state a preference, default 1; a weight of 0 leaves a task out of
training). A method that cannot act on them says why in its options' ``weights_refused`` (a config error for any
weight but 0 and 1), and one on which they act other than as multipliers says how in ``weights_note``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Protocol

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from mtlab.config.base import Strict
from mtlab.registry import Registry

if TYPE_CHECKING:
    from mtlab.weighting.jacobian import ParameterViews


class MethodOptions(Strict):
    """Options every method has. Subclasses add their own and fix ``method`` to their registered name.

    A method's options are the ``loss`` section of a run config (``loss.method``, ``loss.weights``, the method's own
    keys), validated with a line per bad key. ``weights_refused`` (a method invariant to loss scales says why) makes
    any weight but 0 and 1 a config error.

    Attributes:
        method: The method's registered name.
        weights: Per-task loss multipliers applied before the method (default 1; 0 leaves a task out).

    Example:
        ```python
        from typing import Literal
        from pydantic import Field
        from mtlab.weighting.base import LossOptions

        class CappedOptions(LossOptions):
            method: Literal["capped"] = "capped"
            cap: float = Field(10.0, gt=0, description="Largest weight a task may get.")
        ```
    """

    method: str
    weights: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=dict,
        description="Constant per-task multipliers of the task losses, applied before the method (default 1).",
    )

    weights_refused: ClassVar[str] = ""
    """Why ``weights`` cannot act on this method (say, it is invariant to each loss's scale by design). Non-empty:
    a weight other than 0 (which leaves a task out) and 1 is a config error carrying this reason."""

    @field_validator("weights")
    @classmethod
    def _weights_can_act(cls, weights: dict[str, float]) -> dict[str, float]:
        if cls.weights_refused and any(w not in (0.0, 1.0) for w in weights.values()):
            name = cls.model_fields["method"].default
            raise ValueError(f"{name} {cls.weights_refused}, so weights have no effect; remove them (on the command "
                             "line: loss.weights=null; a weight of 0, which leaves a task out, is allowed)")
        return weights

    def run_problem(self, epochs: int) -> tuple[str, str] | None:
        """Why these options cannot work in a run of ``epochs`` epochs, as (the option's name, the message), or None.
        Checked when a run config is validated; the error names ``loss.<option>`` (STCH: a warm-up that covers every
        epoch)."""
        return None


class LossOptions(MethodOptions):
    """Options of a loss-based method."""


class GradientOptions(MethodOptions):
    """Options of a gradient-based method."""

    gradients: Literal["parameters", "representation"] = Field(
        "parameters",
        description="Balance the gradients of the shared parameters, or (cheaper, as MGDA-UB) of the shared "
        "representation the heads read; 'representation' needs a model with one shared trunk.",
    )


class LookAhead(Protocol):
    """What the loop offers a bilevel method before a step (see :mod:`mtlab.train.lookahead`). Parameters are the
    model's trainable tensors as the loop holds them (K replicas: each holds K rows' worth of values)."""

    replicas: int
    step_size: float
    """The optimiser's current learning rate (the virtual step's alpha)."""

    def losses(self, batch: Literal["step", "meta"]) -> Tensor:
        """(K, T) task losses, scaled by ``loss.weights`` and differentiable, of the step's batch or the meta
        batch at the parameters' current values (batch-norm running statistics are put back after)."""

    def gradients(self, objective: Tensor) -> list[Tensor]:
        """d objective / d parameters, one tensor per parameter (zeros where it does not reach)."""

    def virtual_step(self, gradients: list[Tensor]) -> list[Tensor]:
        """The displacement of a plain step of the run's optimiser with these gradients: -alpha (g + wd theta
        [+ momentum buffer]) - the authors' first-order unrolling, for SGD and Adam alike."""

    def per_replica(self, tensors: list[Tensor], factors: Tensor) -> list[Tensor]:
        """``tensors`` with replica k's values multiplied by ``factors[k]`` (K,)."""

    def moved(self, displacement: list[Tensor]) -> AbstractContextManager[None]:
        """Within the block the parameters are theta + displacement; restored exactly after."""


class WeightingMethod(nn.Module):
    """Base of both kinds. ``tasks`` in the loop's order, ``replicas`` = K, one ``torch.Generator`` per replica."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]]
    paper: ClassVar[str] = ""
    step: ClassVar[Literal["scalar", "jacobian"]]
    min_tasks: ClassVar[int] = 2
    static: ClassVar[bool] = False
    """Whether the objective is the constant-weighted sum of the losses (``loss.weights`` only): a sweep of such
    runs over the weights is the static trade-off the reports draw the adaptive methods against."""
    """Fewest tasks the method is meaningful for (checked when a config is validated, before any training)."""
    needs_losses_after_step: ClassVar[bool] = False
    needs_meta_batch: ClassVar[bool] = False
    """Bilevel: the loop draws a meta batch from the training split and calls ``look_ahead`` before each step."""
    weights_note: ClassVar[str] = ""
    """How ``loss.weights`` act on this method when not (only) as multipliers of the task losses ('' = they are)."""
    samples: ClassVar[int] = 1
    """Independent gradient samples per step (a loss-based method: 1). 2 (double sampling, MoDo and SDMGrad): the
    loop splits each batch into two disjoint halves, takes the task Jacobian of each, and ``aggregate`` gets their
    mean (the batch's Jacobian) as ``jacobian`` and the cross product ``J_1 J_2^T`` (K, T, T), not symmetric, in
    place of the Gramian. Such a method never gets a half of fewer than two examples from an epoch's last, partial
    batch: the loop merges a smaller one into the batch before it (full batches of 2 or 3 still give halves of one)."""

    def __init__(
        self,
        tasks: list[str],
        replicas: int,
        options: MethodOptions,
        generators: list[torch.Generator | None] | None = None,
    ):
        super().__init__()
        self.tasks = list(tasks)
        self.replicas = replicas
        self.options = options
        # None draws from torch's global generator (the functional form's default); training passes seeded ones.
        self.generators = list(generators) if generators is not None else [None] * replicas
        if len(self.generators) != replicas:
            raise ValueError(f"{self.name}: {len(self.generators)} generators for {replicas} replicas")

    @property
    def task_count(self) -> int:
        return len(self.tasks)

    def loss_weights(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """(T,) ``loss.weights`` in the tasks' order (1 for a task not named; 0 leaves a task out of training)."""
        return torch.tensor([self.options.weights.get(t, 1.0) for t in self.tasks], dtype=dtype, device=device)

    def draw(self, sample: Callable[[torch.Generator | None], Tensor]) -> Tensor:
        """Stack one draw per replica, each from the replica's own generator: (K, ...) on the CPU."""
        return torch.stack([sample(g) for g in self.generators])

    def bind(self, views: ParameterViews) -> None:
        """Called once before training with the model's parameter views (shared / task-owned / last shared)."""

    def plan(self, epochs: int, steps_per_epoch: int) -> None:
        """Called once before training with the run's length, for methods whose schedule is a share of the run
        (STCH's warm-up); a loop of one's own calls it likewise."""

    def after_step(self, losses: Tensor, losses_after: Tensor | None) -> None:
        """Called after each optimiser step with the step's task losses (K, T) and, when the method asks for them
        (``needs_losses_after_step``), the losses of the updated model on the same batch (K, T)."""

    def after_epoch(self, losses: Tensor) -> None:
        """Called after each epoch with the epoch-mean training task losses (K, T)."""

    def look_ahead(self, probe: LookAhead) -> None:
        """Called before each optimiser step when ``needs_meta_batch``, with the loop's look-ahead probe."""

    def replica_state(self, k: int) -> dict[str, Tensor]:
        """Replica k's parameters and state (every tensor of a method has a leading replica dimension)."""
        return {name: v[k].detach().clone() for name, v in self.state_dict().items()}

    def load_replica_state(self, k: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, v in self.state_dict(keep_vars=True).items():
                v[k].copy_(state[name])


class LossMethod(WeightingMethod):
    """A loss-based method: task losses (K, T) -> objective (K,); one backward pass of the objective trains everything.

    Subclasses set ``Options`` (a ``MethodOptions`` subclass), ``paper`` and implement ``forward``; hooks
    with no-op defaults (``after_step``, ``after_epoch``, ``look_ahead``) let a method update its state. K is the
    number of stacked replicas (seeds), T the number of tasks.

    Example:
        ```python
        import torch
        from mtlab import LossMethod, register_method

        @register_method
        class Capped(LossMethod):
            Options = CappedOptions  # see MethodOptions
            paper = "a capped sum, for illustration"

            def forward(self, losses):                          # (K, T)
                weights = torch.ones_like(losses).detach()      # (K, T)
                return losses.clamp(max=self.options.cap).sum(1), weights
        ```
    """

    step: ClassVar[Literal["scalar", "jacobian"]] = "scalar"

    @abstractmethod
    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """losses (K, T), differentiable -> (objective (K,), the weight each task's loss got (K, T), detached)."""


class GradientMethod(WeightingMethod):
    """A gradient-based method: per-task gradients (K, T, P) and their Gramian (K, T, T) -> the update (K, P).

    The loop takes each task's gradient of the shared parameters (P of them, flattened) for each of K replicas,
    hands the Jacobian and its Gramian ``J J^T`` to ``aggregate``, and writes the update back; task-owned
    parameters keep their own task's gradient. The class attributes below are the properties the method promises,
    which the tests parametrised over the registry check. ``aggregate`` is the functional form.

    Example:
        The mean of the task gradients, from the Gramian's shape alone:

        ```python
        import torch
        from mtlab import GradientMethod, register_method

        @register_method
        class MyMean(GradientMethod):
            Options = MyMeanOptions  # a GradientOptions subclass with method: Literal["my_mean"]
            paper = "the mean of the task gradients"

            def aggregate(self, jacobian, gramian):       # (K, T, P), (K, T, T)
                k, t, _ = gramian.shape
                weights = torch.full((k, t), 1.0 / t, dtype=jacobian.dtype, device=jacobian.device)
                return torch.einsum("kt,ktp->kp", weights, jacobian), weights   # (K, P), (K, T)
        ```
    """

    step: ClassVar[Literal["scalar", "jacobian"]] = "jacobian"

    # The properties the method promises, which the tests parametrised over the registry check (a method opts in,
    # as TorchJD's aggregator tests do; no list of exceptions by name):
    linear_under_scaling: ClassVar[bool] = True
    """aggregate(c J) = c aggregate(J) for c > 0."""
    task_order: ClassVar[Literal["any", "two_tasks", "random"]] = "any"
    """Invariance to permuting the tasks: always, only for two tasks (the rest visited in a random order), or none
    (random draws per coordinate)."""
    non_conflicting: ClassVar[dict[str, object] | None] = None
    """Options under which the update conflicts with no task gradient (d . g_t >= 0), or None."""
    when_gradients_agree: ClassVar[Literal["mean", "sum", "along"]] = "along"
    """The update for T identical gradients g: exactly g (mean), T g (sum), or some vector along g."""

    def task_objectives(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """losses (K, T), differentiable -> (the objectives whose gradients the method balances (K, T), and their
        derivative with respect to the losses (K, T), detached, which the recorded weights are multiplied by).
        Default: the losses themselves. Task-owned parameters, and the method's own parameters, get the gradient of
        these objectives (DB-MTL's log-losses, IMTL's learned loss scales)."""
        return losses, torch.ones_like(losses)

    @abstractmethod
    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        """jacobian (K, T, P), gramian (K, T, T) = J J^T -> (update (K, P), per-task weights (K, T) to record)."""


class GramianMethod(GradientMethod):
    """An update ``sum_t w_t g_t`` whose weights come from the Gramian (K, T, T) alone."""

    @abstractmethod
    def gramian_weights(self, gramian: Tensor) -> Tensor:
        """gramian (K, T, T) -> weights (K, T), in the gramian's dtype."""

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.gramian_weights(gramian).to(jacobian.dtype)  # (K, T)
        return torch.einsum("kt,ktp->kp", weights, jacobian), weights


METHODS: Registry[type[WeightingMethod]] = Registry("weighting method", entry_point_group="mtlab.weightings")
"""Weighting methods by ``loss.method``; mtlab's own register when :mod:`mtlab.weighting.catalog` imports them, an
outside package's through the ``mtlab.weightings`` entry points."""


def register_method(cls: type[WeightingMethod]) -> type[WeightingMethod]:
    """Class decorator: register a method class under the literal of its ``Options.method`` (one name, once).

    Args:
        cls: A ``LossMethod`` or ``GradientMethod`` subclass whose ``Options.method`` defaults to its name.

    Returns:
        ``cls``, with ``cls.name`` set; ``loss.method: NAME`` now selects it, and ``loss.method: all`` includes it.

    Raises:
        TypeError: ``Options.method`` has no default name.
        ValueError: A method of that name is already registered.

    Example:
        See ``LossMethod`` and ``GradientMethod``. An outside package registers from a module named by its
        ``mtlab.weightings`` entry point.
    """
    field = cls.Options.model_fields["method"]
    name = field.default
    if not isinstance(name, str):
        raise TypeError(f"{cls.__name__}.Options.method needs its registered name as default")
    METHODS.register(name)(cls)  # a name registered twice is a ValueError
    cls.name = name
    return cls


def registered_methods() -> list[str]:
    """Every registered method name: the loss-based ones, then the gradient-based ones, each alphabetically.

    Returns:
        The names ``loss.method`` accepts (``mtlab weightings`` lists them with their options).

    Example:
        ```python
        from mtlab import registered_methods

        "pcgrad" in registered_methods()  # True
        ```
    """
    return sorted(METHODS.names(), key=lambda name: (METHODS.get(name).step != "scalar", name))


def method_class(name: str) -> type[WeightingMethod]:
    if name not in METHODS:
        raise KeyError(f"unknown weighting method {name!r}; known: {registered_methods()}")
    return METHODS.get(name)


def create_method(
    options: MethodOptions | dict,
    tasks: list[str],
    replicas: int = 1,
    generators: list[torch.Generator | None] | None = None,
) -> WeightingMethod:
    """The method ``options.method`` for ``tasks`` and K = ``replicas``, validated options included."""
    raw = options.model_dump() if isinstance(options, MethodOptions) else dict(options)
    cls = method_class(raw.get("method", "fixed"))
    return cls(tasks, replicas, cls.Options.model_validate(raw), generators)
