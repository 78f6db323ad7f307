"""Architecture search: spec validation, space sampling, pruning, and resumable end-to-end searches on real MNIST."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import require_shared_data
from mtlab.cli import search_cmd
from mtlab.errors import ConfigError
from mtlab.search import builtin_search_paths, find_search, load_search_spec, with_budget
from mtlab.search.run import extremes, run_search
from mtlab.search.space import describe, trial_config
from mtlab.search.spec import SearchSpec, validate_spec
from mtlab.search.trials import OptunaPruning

BASE = {"data": {"dataset": "mnist", "val_fraction": 0.1}, "train": {"epochs": 2, "batch_size": 50}}


def spec_file(tmp_path, **changes):
    raw = {
        "name": "tiny",
        "base": BASE,
        "space": {"type": "mlp", "depth": {"low": 1, "high": 2}, "width": {"low": 16, "high": 64, "step": 16}},
        "trials": 2,
        **changes,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(builtin_search_paths()))
def test_builtin_searches_are_valid_for_every_budget(name):
    spec, path = find_search(name)
    header = path.read_text().splitlines()[0]
    assert header.startswith(f"# {name}:")
    assert any("mtlab search" in line for line in path.read_text().splitlines() if line.startswith("#"))
    assert set(spec.budgets) >= {"quick", "full"}
    for budget in spec.budgets:
        assert with_budget(spec, budget).sample_config().task_names == ["digit"]
    assert spec.objective_key() == "val.digit.acc"
    assert spec.direction == "maximize"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trails": 3}, "trails: unknown key"),
        (
            {"space": {"type": "mlp", "depth": {"low": 1, "high": 2, "lowest": 1}, "width": {"low": 8, "high": 8}}},
            "space.depth.lowest: unknown key",
        ),
        ({"space": {"type": "rnn"}}, "space.type: unknown value 'rnn'"),
        ({"objective": "test.digit.acc"}, "never a test metric"),
        ({"candidates": {"a": {"model.trunk": {"type": "mlp", "widths": [8]}}}}, "exactly one of space and candidates"),
        ({"base": {**BASE, "data": {"dataset": "mnist", "val_fraction": 0.0}}}, "needs a validation split"),
        ({"base": {**BASE, "optim": {"lr": -1}}}, "optim.lr"),
        (
            {
                "space": {
                    "type": "cnn",
                    "depth": {"low": 2, "high": 5},
                    "filters": {"low": 8, "high": 8},
                    "pooled_layers": 5,
                }
            },
            "conv layer 5 leaves no pixels",
        ),
        ({"objective": "val.item.acc"}, "unknown task 'item'"),
        ({"objective": "val.digit.mae"}, "unknown metric 'mae'; digit is a multiclass task"),
        ({"objective": "val.digit"}, "must be 'val.<task>.<metric>'"),
    ],
)
def test_bad_specs_fail_with_the_key_named(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_search_spec(spec_file(tmp_path, **changes))


@pytest.mark.parametrize(("image_size", "pooled", "fits"), [(64, 5, True), (8, 4, False), (None, 7, True)])
def test_the_feature_map_check_asks_the_dataset_its_input_size(tmp_path, image_size, pooled, fits):
    """CelebA at image_size 64 has room for five 2x pools, at 8 not for four, at 178 x 218 for seven (the check
    used to assume 28 pixels for every dataset but CIFAR-100 and the digit pairs)."""
    base = {"data": {"dataset": "celeba", "image_size": image_size}, "tasks": ["Smiling"], "train": {"epochs": 1}}
    space = {"type": "cnn", "depth": {"low": pooled, "high": pooled}, "filters": {"low": 4, "high": 4},
             "pooled_layers": pooled}  # fmt: skip
    path = spec_file(tmp_path, base=base, space=space, objective="val.Smiling.acc")
    if fits:
        load_search_spec(path)
    else:
        with pytest.raises(ConfigError, match=f"conv layer {pooled} leaves no pixels"):
            load_search_spec(path)


@pytest.mark.parametrize(
    ("objective", "direction"),
    [("val.digit.acc", "maximize"), ("val.digit.f1", "maximize"), ("val.digit.loss", "minimize")],
)
def test_the_objective_is_any_metric_of_the_tasks_type_in_its_direction(tmp_path, objective, direction):
    spec = load_search_spec(spec_file(tmp_path, objective=objective))
    assert spec.objective_key() == objective
    assert spec.direction == direction


def test_a_regression_objective_defaults_to_its_primary_metric_and_is_minimised(tmp_path):
    base = {"data": {"dataset": "morpho-mnist-sample", "val_fraction": 0.1}, "tasks": ["thickness", "digit"],
            "train": {"epochs": 1}}  # fmt: skip
    spec = load_search_spec(spec_file(tmp_path, base=base))
    assert spec.objective_key() == "val.thickness.mae"
    assert spec.direction == "minimize"
    r2 = load_search_spec(spec_file(tmp_path, base=base, objective="val.thickness.r2"))
    assert r2.direction == "maximize"


def test_search_report_shows_percent_only_for_fraction_metrics():
    from mtlab.search.report import _fmt

    assert _fmt(0.8512, "val.digit.acc") == "85.12"
    assert _fmt(0.7, "val.digit.f1") == "70.00"
    assert _fmt(0.4512, "val.thickness.mae") == "0.4512"
    assert _fmt(0.81234, "val.thickness.r2") == "0.812"
    assert _fmt(None, "val.digit.acc") == "–"


def test_trial_config_follows_the_sampled_architecture(tmp_path):
    spec = load_search_spec(
        spec_file(
            tmp_path,
            space={
                "type": "cnn",
                "depth": {"low": 2, "high": 3},
                "filters": {"low": 8, "high": 32, "step": 8},
                "kernel": [3, 5],
                "lr": {"low": 1e-4, "high": 1e-2},
            },
        )
    )
    params = {"depth": 3, "filters1": 8, "filters2": 16, "filters3": 32, "kernel1": 5, "kernel2": 3, "kernel3": 3}
    config = trial_config(spec, optuna.trial.FixedTrial({**params, "lr": 0.003}))
    assert [(c.filters, c.kernel, c.pool) for c in config.model.trunk.conv] == [(8, 5, 2), (16, 3, 2), (32, 3, 1)]
    assert config.optim.lr == 0.003
    assert config.seed == spec.seed
    architecture = describe(config)
    assert (architecture.depth, architecture.max_width, architecture.label) == (3, 32, "8k5p2-16k3p2-32k3")


class StubTrial:
    def __init__(self, prune_at):
        self.prune_at, self.reported, self.attrs = prune_at, {}, {}

    def report(self, value, step):
        self.reported[step] = value

    def set_user_attr(self, key, value):
        self.attrs[key] = value

    def should_prune(self):
        return max(self.reported) >= self.prune_at


def test_pruning_observer_reports_every_epoch_and_raises_when_told():
    trial = StubTrial(prune_at=2)
    observer = OptunaPruning(trial, "val.digit.acc")
    observer.on_epoch_end({"epoch": 1, "val.digit.acc": 0.5, "seconds": 1.0})
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        observer.on_epoch_end({"epoch": 2, "val.digit.acc": 0.6, "seconds": 1.5})
    assert trial.reported == {1: 0.5, 2: 0.6}
    assert trial.attrs == {"epochs": 2, "seconds": 2.5}


def search(*argv):
    parser = argparse.ArgumentParser()
    search_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["search", *argv])
    return args.func(args)


def read_trials(out):
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_mlp_search_runs_resumes_and_retrains_best_and_worst(tmp_path):
    require_shared_data()
    out = tmp_path / "mlp"
    tiny = ["mnist-mlp", "--subset", "1000", "--epochs", "2", "--out", str(out)]
    assert search(*tiny, "--trials", "2") == 0
    trials = read_trials(out)
    assert [t["state"] for t in trials] == ["complete", "complete"]
    retrained = json.loads((out / "retrained.json").read_text())
    assert {r["trial"] for r in retrained} == {0, 1}
    for r in retrained:
        # Same config and seed: the retrained network reproduces the trial's validation value exactly.
        trial = next(t for t in trials if int(t["trial"]) == r["trial"])
        assert r["val"] == pytest.approx(float(trial["objective"]), abs=1e-12)
        assert 0.3 < r["test"] <= 1.0  # the objective's metric (accuracy) on the test split
    for name in ("search.json", "retrained.csv", "report.html", "report.md", "search.sqlite", "figures/trials.png"):
        assert (out / name).exists(), name
    html = (out / "report.html").read_text()
    assert "Best and worst per depth" in html
    assert "data:image/png;base64," in html

    # Resume with a larger budget: exactly one more trial, earlier ones untouched.
    assert search(*tiny, "--trials", "3") == 0
    resumed = read_trials(out)
    assert len(resumed) == 3
    assert resumed[:2] == trials
    # Same budget again: nothing to do.
    assert search(*tiny, "--trials", "3") == 0
    assert read_trials(out) == resumed
    # A different spec (here: other overrides) may not reuse the stored study.
    with pytest.raises(ConfigError, match="different spec"):
        search("mnist-mlp", "--subset", "800", "--epochs", "2", "--out", str(out), "--trials", "3")


def test_single_layer_comparison_trains_each_candidate_once(tmp_path):
    require_shared_data()
    out = tmp_path / "single"
    assert search("mnist-single-layer", "--subset", "1000", "--epochs", "1", "--out", str(out)) == 0
    trials = read_trials(out)
    assert sorted(t["architecture"] for t in trials) == ["1000", "16k4p4"]
    assert sorted(int(t["parameters"]) for t in trials) == [6042, 795010]  # the reference's counts
    retrained = json.loads((out / "retrained.json").read_text())
    assert sorted(r["rank"] for r in retrained) == ["best", "worst"]


def test_pruned_trials_are_recorded_with_their_last_epoch(tmp_path, monkeypatch):
    require_shared_data()

    class PruneFromSecondTrial(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number > 0

    monkeypatch.setattr("mtlab.search.trials._pruner", lambda spec: PruneFromSecondTrial())
    spec = load_search_spec(spec_file(tmp_path, trials=3))
    spec = with_budget(spec, None, {"data.train_subset": 600, "data.test_subset": 200})
    outcome = run_search(spec, tmp_path / "out", retrain=False)
    states = [t.state for t in outcome.trials]
    assert states == ["complete", "pruned", "pruned"]
    for t in outcome.trials[1:]:
        assert t.epochs == 1
        assert list(t.curve) == [1]
        assert t.parameters > 0
        assert t.value == t.curve[1]
    assert [rank for rank, _ in extremes(outcome)] == ["best"]  # pruned trials are never retrained


def test_storage_errors_are_user_errors(tmp_path):
    spec = validate_spec(SearchSpec.model_validate(yaml.safe_load(spec_file(tmp_path).read_text())), "tiny")
    with pytest.raises(ConfigError, match="--storage"):
        run_search(spec, tmp_path / "out", storage="nosuchdb://x")


def test_two_workers_run_exactly_the_trials_asked_none_twice_and_resume(tmp_path):
    require_shared_data()
    spec = load_search_spec(spec_file(tmp_path, trials=4, pruner={"type": "none"}))
    spec = with_budget(spec, None, {"data.train_subset": 600, "data.test_subset": 200})
    out = tmp_path / "out"
    seen = []
    outcome = run_search(spec, out, retrain=False, workers=2, on_trial=seen.append)
    assert sorted(t.number for t in outcome.trials) == [0, 1, 2, 3]
    assert [t.state for t in outcome.trials] == ["complete"] * 4
    assert sorted(t.number for t in seen) == [0, 1, 2, 3]  # each finished trial reported once
    assert (out / "search.journal").is_file()  # the storage Optuna recommends for several processes
    study = optuna.load_study(study_name=outcome.study_name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "search.journal"))))  # fmt: skip
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both workers trained
    more = run_search(spec.model_copy(update={"trials": 5}), out, retrain=False, workers=2)
    assert sorted(t.number for t in more.trials) == [0, 1, 2, 3, 4]  # one more; none redone
    assert [t.params for t in more.trials[:4]] == [t.params for t in outcome.trials]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray cluster at a time (see test_executors)
def test_a_search_runs_its_trials_on_the_ray_executor(tmp_path, monkeypatch):
    """Searches use the executor service studies use: here Ray tasks on a private local instance."""
    pytest.importorskip("ray", reason="--executor ray needs Ray (pip install 'mtlab[ray]')")
    require_shared_data()
    # A private Ray instance writes an auth token to ~/.ray, which later clusters of this user would then expect:
    # keep it (and Ray's session files) out of the real home and /tmp/ray.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="mtlab-r-"))  # short: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    spec = load_search_spec(spec_file(tmp_path, trials=3, pruner={"type": "none"}))
    spec = with_budget(spec, None, {"data.train_subset": 300, "data.test_subset": 100})
    seen = []
    outcome = run_search(spec, tmp_path / "out", retrain=False, workers=2, executor="ray", on_trial=seen.append)
    assert sorted(t.number for t in outcome.trials) == [0, 1, 2]
    assert [t.state for t in outcome.trials] == ["complete"] * 3
    assert sorted(t.number for t in seen) == [0, 1, 2]
    shutil.rmtree(ray_tmp, ignore_errors=True)
