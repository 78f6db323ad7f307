"""From a first run to a first study (issue 32): a run config as a study's base, config error lines that can be
followed, honest times and rankings, figures and tables that stay put."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtlab.cli.main import main
from mtlab.config import load_config
from mtlab.errors import ConfigError
from mtlab.study.definition import definition_change
from mtlab.study.spec import expand, load_study_spec

RUN = {
    "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
    "model": {"trunk": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
    "train": {"epochs": 1, "batch_size": 50, "threads": 1},
}
STUDY = {"name": "first", "seeds": 1, "variants": {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}}


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------------- 1. a run config as a study's base


def test_a_study_base_may_name_a_run_config_file_with_the_study_on_top(tmp_path):
    write(tmp_path / "configs" / "run.yaml", RUN)
    by_path = load_study_spec(write(tmp_path / "study.yaml", {**STUDY, "base": "configs/run.yaml"}))
    inline = load_study_spec(write(tmp_path / "inline.yaml", {**STUDY, "base": RUN}))
    assert by_path.base == RUN  # the stored definition holds the content, not the path
    runs = expand(by_path)
    assert [r.run_id for r in runs] == [r.run_id for r in expand(inline)]
    assert [r.config.loss.method for r in runs] == ["fixed", "uncertainty"]  # the variants' set applies on top


def test_an_edit_of_the_base_file_is_a_redefinition(tmp_path):
    run = write(tmp_path / "run.yaml", RUN)
    study = write(tmp_path / "study.yaml", {**STUDY, "base": "run.yaml"})
    before = load_study_spec(study)
    stored = {r.run_id: "done" for r in expand(before)}
    info = {"name": "first", "budget": None, "overrides": {}, "spec": before.model_dump(mode="json")}
    write(run, {**RUN, "train": {**RUN["train"], "batch_size": 20}})
    after = load_study_spec(study)
    change = definition_change(info, stored, after, None, {}, expand(after))
    assert change is not None
    assert "base.train.batch_size 20 (stored: 50)" in change


def test_a_bad_base_path_or_a_bad_key_in_it_is_one_line_naming_the_file(tmp_path, capsys):
    study = write(tmp_path / "study.yaml", {**STUDY, "base": "absent.yaml"})
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("mtlab: error:") == 1
    assert "study.yaml:8: base: absent.yaml: no such file" in err
    assert not (tmp_path / "out").exists()
    write(tmp_path / "run.yaml", {**RUN, "train": {"epochs": 1, "batch_sise": 50}})
    message = error_of(load_study_spec, write(tmp_path / "study.yaml", {**STUDY, "base": "run.yaml"}))
    assert message.startswith(f"{tmp_path / 'run.yaml'}:")
    assert "train.batch_sise: unknown key" in message


# ------------------------------------------------------------------------------- 11. unsetting from the command line


def test_an_override_to_null_unsets_a_key_that_takes_no_null():
    example = "examples/fashion-mtl-sample.yaml"
    refused = error_of(load_config, example, ["loss.method=nash_mtl"], "command line override")
    assert "remove them (on the command line: loss.weights=null" in refused
    config = load_config(example, ["loss.method=nash_mtl", "loss.weights=null"], "command line override")
    assert config.loss.weights == {}
    assert load_config(example, ["train.epochs=null"]).train.epochs == type(config.train)().epochs
    assert load_config(example, ["train.early_stopping=null"]).train.early_stopping is None  # null is a value here


# ---------------------------------------------------------------------------------------- 12. where a YAML error starts


def test_a_yaml_error_names_the_line_where_the_unclosed_part_starts(tmp_path):
    bad = write(tmp_path / "bad.yaml", "data: {dataset: mnist\nmodel: {kind: hps}\ntrain: {epochs: 1}\n")
    message = error_of(load_config, bad)
    assert message.startswith(f"{bad}: line 2 invalid YAML")
    assert "flow mapping that starts on line 1" in message
