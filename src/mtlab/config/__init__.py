"""Run configuration: typed schema (:mod:`.schema`) and YAML loading with key-path errors (:mod:`.load`)."""

from mtlab.config.load import load_config, parse_config
from mtlab.config.schema import RunConfig

__all__ = ["RunConfig", "load_config", "parse_config"]
