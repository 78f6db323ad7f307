"""The run config is assembled in two steps (mtlab.config.base): plug-ins declare their options in their own modules,
referring to the shared unions by forward reference; the config layer loads them through the registries and
rebuilds. The config layer imports no data or model module, and importing it loads no plug-in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from pydantic import TypeAdapter

from mtlab.config.base import MODEL_KINDS, TRUNKS, shared_unions

CONFIG = Path(__file__).resolve().parents[1] / "src" / "mtlab" / "config"
STILL_IMPORTED: set[str] = set()  # config imports from data / models that are allowed for now (none)


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports, at module level or inside functions (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skipped = {id(n) for node in guarded for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_config_layer_imports_no_data_or_model_module():
    found = {module for path in CONFIG.glob("*.py") for module in imports(path)}
    upward = {module for module in found if module.startswith(("mtlab.data", "mtlab.models"))}
    assert upward - STILL_IMPORTED == set()
    assert STILL_IMPORTED - upward == set(), "an allowed import is gone: remove it from STILL_IMPORTED"


def test_importing_the_schema_loads_no_plug_in_and_validating_loads_them_all():
    code = (
        "import sys\n"
        "import mtlab.config.schema, mtlab.config.load\n"
        "print(sorted(m for m in sys.modules if m.startswith('mtlab.models')))\n"
        "from mtlab.config import parse_config\n"
        "parse_config({'data': {'dataset': 'fashion-mnist'}, 'model': {'trunk': {'type': 'mlp'}}})\n"
        "print('mtlab.models.segnet' in sys.modules, 'mtlab.models.trunks.resnet' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.splitlines()
    assert before == "[]"
    assert after == "True True"


def test_the_unions_hold_every_registered_class():
    unions = shared_unions()
    for name, cls in TRUNKS.items():
        assert type(TypeAdapter(unions["Trunk"]).validate_python({**cls.example(), "type": name})) is cls
    for name, cls in MODEL_KINDS.items():
        options = {**cls.example().options, "kind": name}
        assert type(TypeAdapter(unions["ModelConfig"]).validate_python(options)) is cls


def test_a_kind_refers_to_the_trunk_union_by_forward_reference():
    multitask = MODEL_KINDS.get("multitask")
    model = multitask(kind="multitask", trunk=TRUNKS.get("demo_gated").example())
    assert type(model.trunk) is TRUNKS.get("demo_gated")  # the outside package's trunk, in mtlab's kind


def test_a_registry_imports_its_built_in_modules_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "regdemo_home.py").write_text(
        "from mtlab.registry import Registry\nTHINGS = Registry('thing', builtins=('regdemo_item',))\n"
    )
    (tmp_path / "regdemo_item.py").write_text("from regdemo_home import THINGS\nTHINGS.register('x')(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import regdemo_home

    assert "regdemo_item" not in sys.modules  # declared by name, not imported
    assert regdemo_home.THINGS.names() == ["x"]
    assert regdemo_home.THINGS.get("x") == 1


def test_a_trunk_registered_after_the_assembly_is_refused_with_the_way_to_declare_it():
    from typing import Literal

    import pytest

    from mtlab.config.base import TrunkOptions, register_trunk

    shared_unions()

    class Late(TrunkOptions):
        type: Literal["late"]

    with pytest.raises(RuntimeError, match=r"registers after the run config was assembled.*mtlab\.trunks entry point"):
        register_trunk(Late)
    assert "late" not in TRUNKS
