"""A study directory is never silently redefined: a differing command is refused with what differs, ``--redefine``
keeps the earlier runs; an interrupt leaves no run ``running`` (real signals to a real driver: test_crashes.py); the
report shows the overrides and never counts runs as running when nothing runs; ``mtlab run --out`` refuses a run
directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtlab.cli.main import main
from mtlab.errors import MtlabError
from mtlab.report import build_report
from mtlab.study.definition import definition_change
from mtlab.study.lock import StudyLock, driver_active
from mtlab.study.runner import run_study
from mtlab.study.spec import StudySpec, expand
from mtlab.study.store import ResultStore
from mtlab.train.run import train_runs

TINY = {
    "name": "tiny",
    "seeds": 1,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
        "model": {"trunk": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
        "train": {"epochs": 1, "batch_size": 50, "threads": 1},
    },
    "grid": {"model.sharing": ["shared", "independent"]},
    "control": "independent",
    "budgets": {"quick": {}, "longer": {"set": {"train.epochs": 2}}},
    "default_budget": "quick",
}


def tiny(**changes) -> StudySpec:
    return StudySpec.model_validate({**TINY, **changes})


def statuses(directory: Path, active_only: bool = True) -> dict[str, str]:
    with ResultStore(directory / "results.sqlite") as store:
        return store.statuses(active_only=active_only)


def info(directory: Path) -> dict:
    with ResultStore(directory / "results.sqlite") as store:
        return store.info()


@pytest.fixture(scope="module")
def finished(built_once) -> Path:
    """A finished tiny study (2 runs), trained once for the session, to copy."""

    def make(directory: Path) -> Path:
        run_study(tiny(), directory / "study", command=["mtlab", "run", "tiny.yaml"])
        return directory / "study"

    return built_once("test_study_definition-finished", make)


@pytest.fixture
def study(finished, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "study"
    shutil.copytree(finished, copy)
    return copy


# ------------------------------------------------------------------------------------------ refusing redefinitions


@pytest.mark.parametrize(
    ("spec", "budget", "overrides", "differs"),
    [
        (TINY, None, {"train.epochs": 2}, "overrides train.epochs=2 (stored: not set): 2 of its 2 runs are not in "
                                          "the store, and 2 stored runs (2 finished) are not in it"),
        (TINY, "longer", None, "budget longer (stored: quick)"),
        ({**TINY, "seeds": 2}, None, None,
         "the study spec's seeds 2 (stored: 1): 2 of its 4 runs are not in the store;"),
        ({**TINY, "grid": {**TINY["grid"], "optim.lr": [0.01]}, "control": {"match": {"model.sharing": "independent"}}},
         None, None,
         "the study spec's grid.optim.lr (added): 2 of its 2 runs are not in the store, and 2 stored runs"),
        ({**TINY, "base": {**TINY["base"], "seed": 0, "train": {**TINY["base"]["train"], "batch_size": 20}}}, None,
         None, "the study spec's base.train.batch_size 20 (stored: 50), base.seed (added):"),
    ],
)  # fmt: skip
def test_a_command_that_differs_is_refused_with_what_differs_and_changes_nothing(study, spec, budget, overrides,
                                                                                 differs):  # fmt: skip
    before = statuses(study, active_only=False)
    stored = info(study)
    with pytest.raises(MtlabError) as error:
        run_study(StudySpec.model_validate(spec), study, budget=budget, overrides=overrides, train=_no_training)
    message = str(error.value)
    assert "\n" not in message
    assert differs in message
    assert "choose another --out" in message
    assert "--redefine" in message
    assert statuses(study, active_only=False) == before
    assert info(study) == stored


def test_run_configs_that_resolve_otherwise_name_the_keys_that_moved():
    """Same study, budget, overrides and spec, other run ids: a default of mtlab changed, or a relative path
    resolved from another directory; the keys that moved are named from the stored first run's config."""
    runs = expand(tiny(), "quick")
    info = {"name": "tiny", "budget": "quick", "overrides": {}, "spec": tiny().model_dump(mode="json")}
    first = runs[0].config.model_dump(mode="json")
    first["train"]["eval_batch_size"] = 7
    stored = {f"old{i}": "done" for i in range(len(runs))}
    change = definition_change(info, stored, tiny(), "quick", {}, runs, first)
    assert change.startswith("this command differs from the study stored there in the resolved run configs "
                             "(train.eval_batch_size 1000 (stored: 7)): mtlab's defaults, or a path")  # fmt: skip
    assert definition_change(info, {r.run_id: "done" for r in runs}, tiny(), "quick", {}, runs, first) is None


def test_edits_that_change_no_run_are_not_a_redefinition(study):
    spec = tiny(description="now with words", budgets={**TINY["budgets"], "huge": {"seeds": 10}})
    assert run_study(spec, study, train=_no_training).trained == 0
    assert run_study(tiny(), study, redefine=True, train=_no_training).trained == 0  # the same: nothing superseded
    assert "superseded" not in info(study)


def test_the_command_line_refuses_in_one_line(study, tmp_path, capsys):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(spec_file), "--out", str(study), "--no-report", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"mtlab: error: {study}: this command differs from the study stored there in overrides "
                             "train.epochs=2 (stored: not set)")  # fmt: skip


def test_redefine_keeps_the_earlier_runs_and_the_report_counts_them(study):
    first = statuses(study)
    result = run_study(tiny(), study, overrides={"train.epochs": 2}, redefine=True,
                       command=["mtlab", "run", "tiny.yaml", "train.epochs=2", "--redefine"])  # fmt: skip
    assert result.trained == 2
    everything = statuses(study, active_only=False)
    assert {r: everything[r] for r in first} == first  # still there, still done
    assert len(everything) == 4
    stored = info(study)
    assert stored["overrides"] == {"train.epochs": 2}
    assert [(e["command"], e["overrides"], e["kept_done"]) for e in stored["superseded"]] == [
        (["mtlab", "run", "tiny.yaml"], {}, 2)
    ]
    report = build_report(study)["md"].read_text()
    header = report.split("## Summary", 1)[0]
    assert "- **Overrides:** train.epochs=2" in header
    assert "- **Done:** 2" in header
    assert "- **Pending:** 0\n" in header
    assert "running" not in header
    assert "- **Superseded:** 2 runs kept (2 finished)" in header
    assert "Superseded: the runs of earlier definitions of this directory stay in the store" in header
    earlier = report.split("### Earlier definitions", 1)[1]
    assert "- **Command:** mtlab run tiny.yaml" in earlier
    assert "- **Overrides:** none" in earlier

    # Back to the first definition: its finished runs are there, nothing is trained again.
    back = run_study(tiny(), study, redefine=True, train=_no_training)
    assert back.trained == 0
    assert statuses(study) == first
    assert len(info(study)["superseded"]) == 2


def _no_training(configs, outs, **kwargs):
    raise AssertionError("no run should train")


# -------------------------------------------------------------------------------------------------- interrupts


class Stop(KeyboardInterrupt):
    """Stands for the command line's SIGTERM exception: the runner raises the same type again."""


def test_an_interrupt_puts_the_runs_in_flight_back_and_says_how_many_are_kept(tmp_path):
    calls = []

    def stopped_in_the_second_group(configs, outs, **kwargs):
        calls.append(len(configs))
        if len(calls) == 2:
            raise Stop
        return train_runs(configs, outs, **kwargs)

    with pytest.raises(Stop, match=r"^1 run kept$"):
        run_study(tiny(), tmp_path, train=stopped_in_the_second_group)
    assert sorted(statuses(tmp_path).values()) == ["done", "pending"]
    assert not driver_active(tmp_path)
    resumed = run_study(tiny(), tmp_path, train=stopped_in_the_second_group)
    assert resumed.trained == 1
    assert calls == [1, 1, 1]
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert store.runs_frame().attempts.tolist() == [1, 2]  # the finished run was not redone


# ------------------------------------------------------------------------------------------------------ report


def test_runs_left_running_by_a_killed_driver_are_not_reported_as_running(study):
    with ResultStore(study / "results.sqlite") as store:  # what kill -9 leaves: a row running, no lock held
        store.sync_runs(expand(tiny(), "longer"))
        run_id = next(r for r, s in store.statuses().items() if s == "pending")
        store.mark_running(run_id, Path("runs") / run_id)
    header = build_report(study)["md"].read_text().split("## Summary", 1)[0]
    assert "- **Pending:** 2\n" in header
    with StudyLock(study):  # a live driver: it is running
        assert driver_active(study)
        header = build_report(study)["md"].read_text().split("## Summary", 1)[0]
    assert "- **Pending:** 2 (1 running)" in header
    assert "- **Overrides:** none" in header


# -------------------------------------------------------------------------------------------- run directories


def test_run_refuses_a_run_directory_and_other_non_empty_directories(tmp_path, capsys):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(TINY["base"]))
    (run_dir / "meta.json").write_text(json.dumps({"status": "done"}))
    assert main(["run", str(spec_file), "--out", str(run_dir)]) == 2
    assert capsys.readouterr().err == (
        f"mtlab: error: {run_dir}: is a run directory (made by `mtlab train`), not a study directory; "
        "choose another --out\n"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "meta.json"]
    assert main(["run", str(spec_file), "--out", str(tmp_path)]) == 2  # holds the spec and the run
    assert "is not empty and holds no study" in capsys.readouterr().err
    assert not (tmp_path / "results.sqlite").exists()
