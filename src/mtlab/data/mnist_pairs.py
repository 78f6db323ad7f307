"""``mnist-pairs``: pairs of MNIST digits avg-pooled to 14 x 14; tasks ``leq`` (is the first digit <= the second?),
``digit_a`` and ``digit_b`` (the digit of each image, the auxiliary tasks).

An example is the two images stacked as channels, (2, 14, 14): only a model that reads pairs takes it (a headed
model would read one image of two channels). :mod:`mtlab.data.pairs` draws the pairs from the run's seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from mtlab.config.base import MODEL_KINDS, DataBase, at, register_dataset
from mtlab.data.mnist import MnistData, source
from mtlab.data.sources import Source

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig
    from mtlab.data.dataset import Dataset


@register_dataset
class MnistPairsData(DataBase):
    """Digit pairs: two MNIST digits avg-pooled to 14x14; tasks ``leq`` (a <= b), ``digit_a``, ``digit_b``.

    ``pairs`` pairs are drawn from the MNIST training set and, separately, ``pairs`` from the test set, both from
    the run's seed.
    """

    dataset: Literal["mnist-pairs"]
    offered_tasks: ClassVar[tuple[str, ...]] = ("leq", "digit_a", "digit_b")
    gives_pairs: ClassVar[bool] = True
    pairs: int = Field(1000, gt=1, description="Number of training pairs, and of test pairs.")
    digits: Literal["mnist", "mnist-sample"] = Field(
        "mnist", description="Where the digits come from: MNIST, or the sample embedded in the package."
    )
    pixel_scale: Literal["unit", "raw"] = Field(
        "unit",
        description="'unit': pixels / 255 before pooling, in [0, 1]; 'raw': the pooled 0-255 values, as the "
        "course's generate_pair_sets gives them to the original study.",
    )

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """Pairs drawn from the embedded MNIST sample (no download)."""
        return {"dataset": name, "pairs": 200, "digits": "mnist-sample"}

    def input_shape(self) -> tuple[int, ...]:
        return (2, 14, 14)

    def sources(self) -> tuple[Source, ...]:
        return (source(self.digits),)

    def check_run(self, run: RunConfig) -> None:
        if not run.model.reads_pairs:
            kinds = " or ".join(repr(name) for name, kind in MODEL_KINDS.items() if kind.reads_pairs)
            raise at("model.kind", f"mnist-pairs data needs a {kinds} model, not {run.model.sharing_label()!r}")

    def load(self, seed: int) -> Dataset:
        from mtlab.data.pairs import make_pairs

        digits = MnistData(dataset=self.digits, data_dir=self.data_dir, download=self.download).load(seed)
        return make_pairs(digits, self.pairs, seed, self.pixel_scale)
