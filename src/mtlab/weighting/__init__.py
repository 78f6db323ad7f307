"""Loss weighting methods, one small module each, registered by name (see :mod:`.base`)."""

from mtlab.weighting import fixed as _fixed  # noqa: F401  (registers "fixed")
from mtlab.weighting.base import Weighting, create_weighting, register_weighting, registered_weightings

__all__ = ["Weighting", "create_weighting", "register_weighting", "registered_weightings"]
