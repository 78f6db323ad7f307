"""Every weighting method, registered by importing its module, and the ``loss`` config section built from them.

Adding a method is one module plus a line here (from an outside package: an ``mtlab.weightings`` entry point); the
config union, ``mtlab weightings`` and the tests parametrised over
:func:`~mtlab.weighting.base.registered_methods` pick it up.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from mtlab.registry import load_entry_points
from mtlab.weighting import (  # noqa: F401  (each import registers its method)
    aligned_mtl,
    auto_lambda,
    cagrad,
    config,
    db_mtl,
    dualproj,
    dwa,
    excess_mtl,
    fairgrad,
    famo,
    fixed,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    imtl_g,
    imtl_l,
    mean,
    mgda,
    moco,
    modo,
    nash_mtl,
    pcgrad,
    rlw,
    scale_invariant,
    sdmgrad,
    stch,
    uncertainty,
    upgrad,
)
from mtlab.weighting.base import method_class, registered_methods

# Outside packages' methods register through the mtlab.weightings entry points, before the union is assembled.
load_entry_points("mtlab.weightings")

LOSS_OPTIONS = tuple(method_class(name).Options for name in registered_methods())

LossConfig = Annotated[Union[LOSS_OPTIONS], Field(discriminator="method")]  # noqa: UP007  (built at run time)
"""The ``loss`` section: one options model per method, selected by ``method`` (default ``fixed``)."""
