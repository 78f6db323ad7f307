"""Studies name method sets (``loss.method: all``), not lists: the set expands to the registered methods where the
study's grid expands, plug-ins included, and a stored study definition holds the names the set had."""

from __future__ import annotations

import pytest
import yaml

from mtlab.builtin_files import builtin_yaml_files
from mtlab.errors import ConfigError
from mtlab.study.definition import as_json, definition_change
from mtlab.study.outline import read_outline
from mtlab.study.spec import StudySpec, expand, load_study_spec
from mtlab.weighting import GradientMethod, LossMethod, method_class, registered_methods
from mtlab.weighting import base as weighting_base
from mtlab.weighting.fixed import Fixed
from mtlab.weighting.sets import method_set

BASE = {
    "data": {"dataset": "fashion-mnist-sample", "train_subset": 60},
    "model": {"trunk": {"type": "mlp", "widths": [8]}},
}


def spec_with(axis) -> StudySpec:
    return StudySpec.model_validate({"name": "sets", "seeds": 1, "base": BASE, "grid": {"loss.method": axis}})


def test_the_sets_are_the_registered_methods_by_kind():
    assert method_set("all") == registered_methods()
    gradient, loss = method_set("gradient"), method_set("loss")
    assert all(issubclass(method_class(m), GradientMethod) for m in gradient)
    assert all(issubclass(method_class(m), LossMethod) for m in loss)
    assert sorted(gradient + loss) == sorted(registered_methods())
    assert method_set("all except fixed, mgda") == [m for m in registered_methods() if m not in ("fixed", "mgda")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every", r"'every' is not a method set; write one of all, gradient, loss"),
        ("all except fxed", r"'fxed' is not in the set 'all'; did you mean 'fixed'\?"),
        ("loss except mgda", r"'mgda' is not in the set 'loss'"),
    ],
)
def test_a_bad_set_says_what_to_write(text, message):
    with pytest.raises(ValueError, match=message):
        method_set(text)


def test_a_bad_set_in_a_study_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "sets", "base": BASE, "grid": {"loss.method": "all but fixed"}}))
    with pytest.raises(ConfigError, match=r"study\.yaml:\d+: grid: loss\.method: 'all but fixed' is not a method set"):
        load_study_spec(path)


def test_a_grid_set_expands_to_one_variant_per_method_and_is_stored_expanded():
    spec = spec_with("all")
    runs = expand(spec)
    assert [r.config.loss.method for r in runs] == registered_methods()
    assert [r.variant for r in runs] == registered_methods()
    assert spec.model_dump(mode="json")["grid"]["loss.method"] == {m: m for m in registered_methods()}


def test_a_set_and_the_list_it_names_are_the_same_study_definition():
    """A store written by a study that listed every method resumes under the study that names the set."""
    listed, named = spec_with(registered_methods()[::-1]), spec_with("all")
    runs = expand(named)
    info = {"name": "sets", "budget": None, "overrides": {}, "spec": as_json(listed.model_dump(mode="json"))}
    stored = {r.run_id: "done" for r in expand(listed)}
    assert definition_change(info, stored, named, None, {}, runs) is None


def test_a_plug_in_method_joins_the_set(monkeypatch):
    class Plugged(Fixed):  # as an outside package's method registers itself (register_method)
        pass

    registered = weighting_base.METHODS._items
    monkeypatch.setitem(registered, "plugged", Plugged)  # what register_method does, undone after the test
    assert "plugged" in method_set("all")
    assert "plugged" in method_set("loss")
    assert "plugged" in spec_with("all").grid["loss.method"]


def test_a_string_axis_of_another_key_is_still_refused():
    with pytest.raises(ValueError, match=r"a list of values or a mapping label -> value \(or, for loss\.method, a set"):
        StudySpec.model_validate({"name": "s", "base": BASE, "grid": {"optim.lr": "all"}})


def test_the_study_listing_counts_a_set_like_the_expansion(tmp_path):
    path = tmp_path / "study.yaml"
    raw = {"name": "sets", "seeds": 2, "base": BASE, "grid": {"loss.method": "all except fixed"}, "budgets": {"q": {}}}
    path.write_text(yaml.safe_dump(raw))
    assert read_outline(path).runs == {"q": 2 * (len(registered_methods()) - 1)}


def _methods_named(node, found: set[str]) -> set[str]:
    """Method names written out in a study file: values of ``loss.method`` / ``method`` keys and their lists."""
    if isinstance(node, dict):
        if "budgets" in node and "set" in node:
            return found  # a variant of a paper's own budget: that paper's fixed methods (multi-mnist's sener-koltun)
        for key, value in node.items():
            if key in ("loss.method", "method"):
                values = value if isinstance(value, list) else list(value) if isinstance(value, dict) else [value]
                found.update(v for v in values if isinstance(v, str) and v in registered_methods())
            _methods_named(value, found)
    elif isinstance(node, list):
        for item in node:
            _methods_named(item, found)
    return found


@pytest.mark.parametrize("name", sorted(builtin_yaml_files("studies")))
def test_no_builtin_study_lists_the_methods_one_by_one(name):
    """Adding a method touches its module and its test, not the study files: a study that compares methods names
    a set, and writes out at most the methods it treats specially (its control, one with its own options)."""
    raw = yaml.safe_load(builtin_yaml_files("studies")[name].read_text())
    named = _methods_named(raw, set())
    assert len(named) <= 2, f"{name} lists methods {sorted(named)}; name a set (loss.method: all)"
