"""Method sets: a study's axis names every registered method (``loss.method: all``), the gradient-based ones
(``gradient``) or the loss-based ones (``loss``), optionally less some (``all except fixed``), instead of listing
names one by one. A method added later - mtlab's own or an installed plug-in's - is then in every study that
names its set, with no study file to edit. The study spec expands a set where it expands its grid, so a stored
study definition holds the names its set had when it ran."""

from __future__ import annotations

from collections.abc import Callable

from mtlab.errors import did_you_mean
from mtlab.weighting import catalog  # noqa: F401  (registers the built-in methods and the plug-ins' entry points)
from mtlab.weighting.base import GradientMethod, LossMethod, method_class, registered_methods

METHOD_SETS: dict[str, Callable[[], list[str]]] = {
    "all": registered_methods,
    "gradient": lambda: [n for n in registered_methods() if issubclass(method_class(n), GradientMethod)],
    "loss": lambda: [n for n in registered_methods() if issubclass(method_class(n), LossMethod)],
}
"""Set name -> its methods, in :func:`~mtlab.weighting.base.registered_methods` order."""

EXCEPT = " except "


def method_set(text: str) -> list[str]:
    """The methods ``text`` names: a set of :data:`METHOD_SETS`, optionally followed by ``except`` and
    comma-separated method names left out (``all except fixed``). Raises ValueError naming what to write."""
    name, _, left_out = (part.strip() for part in f"{text.strip()} ".partition(EXCEPT))
    if name not in METHOD_SETS:
        raise ValueError(
            f"{text!r} is not a method set; write one of {', '.join(METHOD_SETS)} (optionally followed by "
            "'except' and methods to leave out), or a list of methods"
        )
    methods = METHOD_SETS[name]()
    excluded = [m.strip() for m in left_out.split(",") if m.strip()]
    for method in excluded:
        if method not in methods:
            hint = did_you_mean(method, methods, "see mtlab weightings")
            raise ValueError(f"{text!r}: {method!r} is not in the set {name!r}; {hint}")
    chosen = [m for m in methods if m not in excluded]
    if not chosen:
        raise ValueError(f"{text!r} leaves no method")
    return chosen
