"""Loss weighting and gradient balancing: the two method kinds (:mod:`.base`), one module per method, the registry
(:mod:`.catalog`) and the functional form of the gradient methods (:func:`aggregate`)."""

from mtlab.weighting.base import (
    METHODS,
    GradientMethod,
    GramianMethod,
    LossMethod,
    MethodOptions,
    WeightingMethod,
    create_method,
    method_class,
    register_method,
    registered_methods,
)
from mtlab.weighting.catalog import LossConfig
from mtlab.weighting.functional import aggregate, gradient_methods

__all__ = [
    "METHODS",
    "GradientMethod",
    "GramianMethod",
    "LossConfig",
    "LossMethod",
    "MethodOptions",
    "WeightingMethod",
    "aggregate",
    "create_method",
    "gradient_methods",
    "method_class",
    "register_method",
    "registered_methods",
]
