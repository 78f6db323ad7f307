"""The outside plug-in package (tests/plugin_package) loaded into this test process, so that the tests parametrised
over mtlab's registries cover its plug-ins exactly as mtlab's own (test_plugins.py installs it for the command)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent / "plugin_package"
KINDS = ("trunk", "model", "executor", "tracker")
"""The plug-in modules loaded here: the kinds whose registries the model, executor and tracker tests cover."""


def load_demo_plugins(kinds: tuple[str, ...] = KINDS) -> None:
    """Import the demo package's plug-in modules of ``kinds`` (each registers itself, as an entry point would)."""
    if str(PACKAGE) not in sys.path:
        sys.path.append(str(PACKAGE))
    for kind in kinds:
        importlib.import_module(f"mtlab_demo_plugin.{kind}")
