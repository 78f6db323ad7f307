"""Studies: expansion and run ids, the results store, resume after kill -9, the lock, failed runs, controls."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtlab.errors import ConfigError, MtlabError
from mtlab.study.catalog import builtin_study_paths, find_study
from mtlab.study.controls import resolve_controls
from mtlab.study.runner import StudyLock, run_study, seed_groups
from mtlab.study.spec import StudySpec, expand, load_study_spec
from mtlab.study.store import ResultStore
from mtlab.train.fit import TrainingDiverged
from mtlab.train.run import train_run, train_runs

TINY = {
    "name": "tiny",
    "seeds": 2,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 200},
        "model": {"trunk": {"type": "mlp", "widths": [16]}, "head": {"widths": [8]}},
        "train": {"epochs": 2, "batch_size": 64},
    },
    "grid": {"model.sharing": ["shared", "independent"]},
    "control": "independent",
}


def tiny_spec(**changes) -> StudySpec:
    return StudySpec.model_validate({**TINY, **changes})


def test_expansion_order_labels_and_stable_ids():
    runs = expand(tiny_spec())
    assert [(r.variant, r.seed) for r in runs] == [("shared", 0), ("shared", 1), ("independent", 0), ("independent", 1)]
    assert runs[0].labels == {"model.sharing": "shared"}
    assert runs[2].config.model.sharing == "independent"
    assert [r.run_id for r in expand(tiny_spec())] == [r.run_id for r in runs]
    # Adding an axis value keeps every existing id and only adds the new runs.
    more = expand(tiny_spec(seeds=3))
    assert {r.run_id for r in runs} < {r.run_id for r in more}
    assert len(more) == 6


def test_variants_with_their_own_grid_bundles_and_budgets():
    spec = StudySpec.model_validate(
        {
            **TINY,
            "grid": {"aux": {"item only": {"tasks": ["item"]}, "both": {"loss.weights": {"item": 0.5}}}},
            "variants": {"mlp": {}, "wide": {"set": {"model.trunk.widths": [32]}, "grid": {"optim.lr": [0.01, 0.1]}}},
            "budgets": {"quick": {"seeds": 1, "set": {"train.epochs": 1}}},
            "control": {"match": {"aux": "item only"}},
        }
    )
    runs = expand(spec, "quick")
    assert [r.variant for r in runs] == [
        "mlp, item only",
        "mlp, both",
        "wide, item only, 0.01",
        "wide, item only, 0.1",
        "wide, both, 0.01",
        "wide, both, 0.1",
    ]  # the first axis varies slowest
    assert all(r.config.train.epochs == 1 and r.seed == 0 for r in runs)
    assert runs[0].config.task_names == ["item"]
    assert runs[1].config.loss.weights == {"item": 0.5}
    controls = resolve_controls(spec, runs)
    assert controls["mlp, both"] == {"item": "mlp, item only"}
    assert controls["wide, both, 0.1"] == {"item": "wide, item only, 0.1"}
    with pytest.raises(ConfigError, match="budget 'full' is not defined"):
        expand(spec, "full")


def test_per_task_controls_skip_tasks_the_control_lacks():
    spec = StudySpec.model_validate(
        {
            **TINY,
            "grid": {},
            "variants": {
                "item alone": {"set": {"tasks": ["item"]}},
                "group alone": {"set": {"tasks": ["group"]}},
                "both": {},
            },
            "control": {"per_task": {"item": "item alone", "group": "group alone"}},
        }
    )
    controls = resolve_controls(spec, expand(spec))
    assert controls == {"both": {"item": "item alone", "group": "group alone"}}


def test_bad_study_specs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "grid": {"optim.lr": [-1.0]}}))
    with pytest.raises(ConfigError, match=r"variant '-1.0': optim.lr: Input should be greater than 0"):
        load_study_spec(bad)
    bad.write_text(yaml.safe_dump({**TINY, "seeds": 0}))
    with pytest.raises(ConfigError, match="seeds: needs at least one seed"):
        load_study_spec(bad)
    bad.write_text(yaml.safe_dump({**TINY, "colour": 1}))
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load_study_spec(bad)
    with pytest.raises(ConfigError, match="no built-in study of that name"):
        find_study("no-such-study")


@pytest.mark.parametrize("name", sorted(builtin_study_paths()))
def test_every_builtin_study_is_valid_for_every_budget(name):
    spec, path = find_study(name)
    header = path.read_text().splitlines()[:3]
    assert header[0].startswith(f"# {name}:")
    assert any("mtlab run" in line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "full" in spec.budgets  # the original protocol
    assert {"quick", "tiny"} & set(spec.budgets)  # minutes on a CPU; the GPU benchmarks' tiny is a smoke test
    for budget in spec.budgets:
        runs = expand(spec, budget)
        assert runs
        controls = resolve_controls(spec, runs)
        assert controls, f"{name}/{budget}: no variant has a control"


def test_builtin_study_sizes_match_the_original_designs():
    assert len(expand(find_study("mnist-pairs")[0], "full")) == 3 * 2 * 2 * 10
    assert len({r.variant for r in expand(find_study("cifar100-hierarchy")[0], "full")}) == 6
    fashion = {r.variant for r in expand(find_study("fashion-mtl")[0], "full")}
    assert len(fashion) == 2 + 5


def test_store_writes_are_all_or_nothing(tmp_path):
    spec = tiny_spec(seeds=1)
    runs = expand(spec)
    result = train_run(runs[0].config)
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.sync_runs(runs)
        store.mark_running(runs[0].run_id, Path("runs/x"))
        # A failure in the middle of the transaction (after history and metrics rows were inserted).
        store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON confusion BEGIN SELECT RAISE(ABORT, 'boom'); END")
        with pytest.raises(sqlite3.IntegrityError, match="boom"):
            store.record_done(runs[0].run_id, result.result, parameters=1, environment={})
        assert store.db.execute("SELECT COUNT(*) FROM history").fetchone() == (0,)
        assert store.statuses()[runs[0].run_id] == "running"
        assert store.runs_to_do() == [r.run_id for r in runs]
        store.db.execute("DROP TRIGGER boom")
        store.record_done(runs[0].run_id, result.result, parameters=1, environment={})
        assert store.statuses()[runs[0].run_id] == "done"
        frame = store.metrics_frame()
        acc = frame[(frame.task == "item") & (frame.metric == "acc") & (frame.split == "test")]["value"]
        assert acc.tolist() == [result.result.test["test.item.acc"]]


def test_failed_runs_are_stored_the_study_goes_on_and_retry_reruns_only_them(tmp_path):
    spec = tiny_spec()
    calls = []

    def flaky_train(configs, outs, **kwargs):
        calls.extend((c.model.sharing, c.seed) for c in configs)
        outcomes = train_runs(configs, outs, **kwargs)
        if len(calls) <= 4:  # the first time round, independent seed 1 diverges (its group-mate does not)
            outcomes = [
                TrainingDiverged("training diverged at epoch 1: train.loss not finite")
                if (c.model.sharing, c.seed) == ("independent", 1)
                else o
                for c, o in zip(configs, outcomes, strict=True)
            ]
        return outcomes

    result = run_study(spec, tmp_path, train=flaky_train)
    assert len(result.failed) == 1
    assert "diverged" in result.failed[0][1]
    with ResultStore(tmp_path / "results.sqlite") as store:
        frame = store.runs_frame()
        assert sorted(frame.status) == ["done", "done", "done", "failed"]
        assert "TrainingDiverged" in frame[frame.status == "failed"].reason.item()
    again = run_study(spec, tmp_path, train=flaky_train)
    assert again.trained == 0
    assert len(calls) == 4  # failed runs are not retried unless asked
    retried = run_study(spec, tmp_path, retry_failed=True, train=flaky_train)
    assert retried.trained == 1
    assert not retried.failed
    assert calls[-1] == ("independent", 1)


def test_a_crash_fails_the_runs_it_hit_and_the_study_goes_on(tmp_path):
    def crashing_train(configs, outs, **kwargs):
        if configs[0].model.sharing == "shared":
            raise RuntimeError("out of memory")
        return train_runs(configs, outs, **kwargs)

    result = run_study(tiny_spec(), tmp_path, train=crashing_train)
    assert [reason for _, reason in result.failed] == ["RuntimeError: out of memory"] * 2
    assert (tmp_path / "runs" / result.failed[0][0] / "error.txt").read_text().startswith("Traceback")
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert sorted(store.statuses().values()) == ["done", "done", "failed", "failed"]


def test_seeds_of_a_variant_are_grouped_and_give_the_solo_numbers(tmp_path):
    spec = tiny_spec(seeds=3)
    sizes = []

    def recording_train(configs, outs, **kwargs):
        sizes.append(len(configs))
        return train_runs(configs, outs, **kwargs)

    run_study(spec, tmp_path / "grouped", train=recording_train, group_size=2)
    assert sizes == [2, 1, 2, 1]  # 2 variants x 3 seeds, at most 2 seeds at a time
    run_study(spec, tmp_path / "solo", group_seeds="off")
    frames = []
    for name in ("grouped", "solo"):
        with ResultStore(tmp_path / name / "results.sqlite") as store:
            frames.append(store.metrics_frame().sort_values(["run_id", "split", "task", "metric"]))
    assert frames[0].run_id.tolist() == frames[1].run_id.tolist()
    assert frames[0].value.to_numpy() == pytest.approx(frames[1].value.to_numpy(), rel=1e-4, abs=1e-5)


def test_user_errors_stop_the_study(tmp_path):
    def missing_data(configs, outs, **kwargs):
        raise MtlabError("fashion-mnist: files not found")

    with pytest.raises(MtlabError, match="not found"):
        run_study(tiny_spec(), tmp_path, train=missing_data)


def test_lock_refuses_a_second_driver(tmp_path):
    with StudyLock(tmp_path), pytest.raises(MtlabError, match="in use by mtlab pid"):
        run_study(tiny_spec(), tmp_path)
    with StudyLock(tmp_path):  # released: can be taken again
        pass


def _mtlab(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # In the driver's process (--workers 1): one seed group at a time, so the kill lands after exactly one group.
    # The worker pool's kill and resume are tested in test_executors.py.
    return subprocess.Popen(
        [sys.executable, "-m", "mtlab", *args, "--workers", "1"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done_runs(directory: Path) -> int:
    path = directory / "results.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_numbers_without_redoing_runs(tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(
        yaml.safe_dump({**TINY, "seeds": 3, "base": {**TINY["base"], "train": {**TINY["base"]["train"], "epochs": 3}}})
    )
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    driver = _mtlab("run", str(spec_path), "--out", str(killed), "--no-report", cwd=tmp_path)
    deadline = time.time() + 120
    while _done_runs(killed) < 1 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, driver.communicate()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    with ResultStore(killed / "results.sqlite") as store:
        done_before = {r for r, s in store.statuses().items() if s == "done"}
    assert len(done_before) == 3  # the first seed group, recorded as one

    finish = _mtlab("run", str(spec_path), "--out", str(killed), "--no-report", cwd=tmp_path)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert f"trained {6 - len(done_before)} now" in out
    reference = _mtlab("run", str(spec_path), "--out", str(clean), "--no-report", cwd=tmp_path)
    assert reference.wait(timeout=300) == 0

    with ResultStore(killed / "results.sqlite") as resumed, ResultStore(clean / "results.sqlite") as uninterrupted:
        runs = resumed.runs_frame()
        assert set(runs.status) == {"done"}
        assert (runs[runs.run_id.isin(done_before)].attempts == 1).all()  # finished runs were not redone
        a = resumed.metrics_frame().sort_values(["run_id", "split", "task", "metric"]).reset_index(drop=True)
        b = uninterrupted.metrics_frame().sort_values(["run_id", "split", "task", "metric"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        assert resumed.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_studies_page_example_expands_to_its_runs_and_controls():
    """The first study of docs/studies.md (every docs block also validates in test_docs): its run count and the
    per-task control it names."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    block = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = StudySpec.model_validate(yaml.safe_load(block))
    runs = expand(spec, "quick")
    assert len(runs) == (2 + 2 * 2) * 2  # (item alone x sharing + two-head x sharing x lambda) x seeds
    assert resolve_controls(spec, runs)["two-head, independent, lambda=0.7"] == {"item": "item alone, shared"}


@pytest.mark.parametrize(
    ("trunk", "group_seeds", "sizes"),
    [
        ({"type": "mlp", "widths": [16]}, "auto", [3, 3]),
        ({"type": "cnn", "conv": [{"filters": 4}]}, "auto", [1] * 6),  # on a CPU conv seeds train one by one
        ({"type": "cnn", "conv": [{"filters": 4}]}, "on", [3, 3]),
        ({"type": "mlp", "widths": [16]}, "off", [1] * 6),
    ],
)
def test_seed_groups_follow_the_grouping_policy(trunk, group_seeds, sizes):
    base = {**TINY["base"], "model": {"trunk": trunk}, "train": {**TINY["base"]["train"], "device": "cpu"}}
    runs = expand(tiny_spec(seeds=3, base=base), None, None)
    groups = seed_groups(runs, 10, group_seeds)
    assert [len(g) for g in groups] == sizes
    assert [r.run_id for g in groups for r in g] == [r.run_id for r in runs]
