"""Experiment trackers with the real libraries: a study sent to MLflow, TensorBoard and W&B (offline) reads back
equal to the results store, a second export creates nothing new, live tracking works through the process pool
and a Ray cluster, a resumed study duplicates nothing, and a tracker that fails mid-study costs one warning."""

from __future__ import annotations

import glob
import json
import shutil
import sqlite3
import struct
import sys
import warnings
from pathlib import Path

import pytest

from mtlab.cli.main import main
from mtlab.report.tracking import export_study
from mtlab.study.runner import run_study
from mtlab.study.spec import StudySpec
from mtlab.study.store import ResultStore
from mtlab.trackers import TRACKERS, TrackerWarning
from mtlab.train.fit import TrainingDiverged
from mtlab.train.run import train_runs
from test_executors import ray_cluster  # noqa: F401  (the fixture: a real one-node Ray cluster on loopback)

TINY = {
    "name": "tiny",
    "seeds": 2,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
        "model": {"trunk": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
        "train": {"epochs": 2, "batch_size": 64},
    },
    "grid": {"model.sharing": ["shared", "independent"]},
    "control": "independent",
}
DIVERGED = "TrainingDiverged: training diverged at epoch 2: train.loss not finite"


@pytest.fixture(autouse=True)
def _no_tracker_accounts(tmp_path, monkeypatch):
    """No W&B login (no key, no ~/.netrc, no mode forced) and nothing written to the user's home: W&B offline."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def tiny_spec() -> StudySpec:
    return StudySpec.model_validate(TINY)


def shared_seed_1_diverges(configs, outs, **kwargs):
    """Real training, but the run (shared, seed 1) comes back diverged: a failed run with its reason."""
    outcomes = train_runs(configs, outs, **kwargs)
    return [TrainingDiverged(DIVERGED.split(": ", 1)[1]) if (c.model.sharing, c.seed) == ("shared", 1) else o
            for c, o in zip(configs, outcomes, strict=True)]  # fmt: skip


@pytest.fixture(scope="module")
def finished_study(built_once) -> Path:
    """A tiny finished study (2 variants x 2 seeds, 2 epochs; one run failed), trained once for the session (tests
    read it or copy it)."""

    def make(directory: Path) -> Path:
        run_study(tiny_spec(), directory / "study", train=shared_seed_1_diverges)
        return directory / "study"

    return built_once("test_trackers-finished", make)


def store_view(directory: Path) -> dict[str, dict]:
    """Run id -> variant, status, reason, per-epoch history {metric: [(epoch, value)]} and final values."""
    view = {}
    with ResultStore(directory / "results.sqlite") as store:
        for run_id in store.statuses():
            record = store.run_record(run_id)
            history: dict[str, list] = {}
            for row in store.run_history(run_id):
                for metric, value in row.items():
                    if metric != "epoch":
                        history.setdefault(metric, []).append((row["epoch"], value))
            view[run_id] = {"variant": record["variant"], "status": record["status"], "reason": record["reason"],
                            "history": history, "final": store.run_final(run_id)}  # fmt: skip
    return view


# ------------------------------------------------------------------------------------------ reading trackers back


def read_mlflow(directory: Path) -> tuple[dict, dict, int]:
    """(seed runs by mtlab run id, parents by variant, entities: runs + metric points + params + artifacts)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    seeds, entities = {}, len(runs)
    for run in runs:
        histories = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                     for key in run.data.metrics}  # fmt: skip
        entities += sum(map(len, histories.values())) + len(run.data.params)
        entities += len(client.list_artifacts(run.info.run_id))
        if run.info.run_id in parents:
            continue
        parent = parents[run.data.tags["mlflow.parentRunId"]]
        seeds[run.data.tags["run_id"]] = {
            "variant": parent.info.run_name,
            "tag_variant": run.data.tags["variant"],
            "status": {"FINISHED": "done", "FAILED": "failed"}.get(run.info.status, run.info.status),
            "reason": run.data.tags.get("reason"),
            "history": {k: v for k, v in histories.items() if not k.startswith(("test.", "selected."))},
            "final": {k: v for k, v in run.data.metrics.items() if k.startswith("test.")},
            "params": run.data.params,
            "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)],
        }
    by_variant = {r.info.run_name: {"values": r.data.metrics, "status": r.info.status,
                                    "artifacts": [a.path for a in client.list_artifacts(r.info.run_id)]}
                  for r in parents.values()}  # fmt: skip
    return seeds, by_variant, entities


def read_tensorboard(directory: Path) -> tuple[dict, dict, int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    root = directory / "tensorboard"
    seeds, by_variant, entities = {}, {}, 0
    for run_dir in sorted(p for p in root.rglob("*") if p.is_dir()):
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        accumulator.Reload()
        scalars = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
        entities += sum(map(len, scalars.values())) + len(list(run_dir.glob("events.out.tfevents.*")))
        relative = run_dir.relative_to(root).parts
        if len(relative) == 1:
            by_variant[relative[0]] = {"values": {k: v[-1][1] for k, v in scalars.items()}}
            continue
        hparams = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
        end = metadata.parse_session_end_info_plugin_data(hparams[metadata.SESSION_END_INFO_TAG])
        start = metadata.parse_session_start_info_plugin_data(hparams[metadata.SESSION_START_INFO_TAG])
        history = {k: v for k, v in scalars.items() if not k.startswith(("test.", "selected."))}
        seeds[relative[1]] = {
            "variant": relative[0],
            "status": "done" if end.status == 1 else "failed",  # api_pb2.STATUS_SUCCESS = 1
            "history": history,
            "final": {k: v[-1][1] for k, v in scalars.items() if k.startswith("test.")},
            "params": {k: v.string_value or v.number_value for k, v in start.hparams.items()},
        }
    return seeds, by_variant, entities


def _wandb_records(path: Path):
    """The records of a W&B run file: a LevelDB-style log (7-byte header, 32 KiB blocks, each record CRC32 +
    length + type, split across blocks as FIRST/MIDDLE/LAST) of ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, block = path.read_bytes(), 7, b"", 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _name(item) -> str:
    """A W&B record item's key (W&B sends a dotted name as a one-part ``nested_key``)."""
    return item.key or ".".join(item.nested_key)


def read_wandb(directory: Path) -> tuple[dict, dict, int]:
    runs: dict[str, dict] = {}
    files = sorted(glob.glob(str(directory / "wandb" / "offline-run-*" / "run-*.wandb")))
    for path in files:
        run: dict = {"history": {}, "summary": {}, "config": {}, "exit": None}
        for record in _wandb_records(Path(path)):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(id=record.run.run_id, group=record.run.run_group, job_type=record.run.job_type,
                           project=record.run.project)  # fmt: skip
                run["config"].update({_name(item): json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "history":
                values = {_name(item): json.loads(item.value_json) for item in record.history.item}
                for key, value in values.items() if "epoch" in values else ():  # else W&B's own (runtime)
                    if key != "epoch" and not key.startswith("_"):
                        run["history"].setdefault(key, []).append((values["epoch"], value))
            elif kind == "summary":
                run["summary"].update({_name(item): json.loads(item.value_json) for item in record.summary.update})
            elif kind == "config":
                run["config"].update({_name(item): json.loads(item.value_json) for item in record.config.update})
            elif kind == "exit":
                run["exit"] = record.exit.exit_code
        merged = runs.setdefault(run["id"], {"history": {}, "summary": {}, "config": {}})  # resumed: several files
        for key, points in run["history"].items():
            merged["history"].setdefault(key, []).extend(points)
        merged["summary"].update(run["summary"])
        merged["config"].update(run["config"])
        merged.update({k: run[k] for k in ("group", "job_type", "project", "exit")})
    seeds, by_variant = {}, {}
    for run in runs.values():
        assert run["project"] == "tiny"
        if run["job_type"] == "variant":
            by_variant[run["group"]] = {"values": run["summary"]}
            continue
        seeds[run["config"]["mtlab.run_id"]] = {
            "variant": run["group"],
            "status": run["summary"]["status"],
            "reason": run["summary"].get("reason"),
            "history": run["history"],
            "final": {k: v for k, v in run["summary"].items() if k.startswith("test.")},
            "params": run["config"],
            "exit": run["exit"],
        }
    entities = len(files) + sum(len(p) for r in runs.values() for p in r["history"].values())
    return seeds, by_variant, entities


READERS = {"mlflow": read_mlflow, "tensorboard": read_tensorboard, "wandb": read_wandb}


def assert_matches_store(directory: Path, tracker: str, timings_may_differ: bool = False) -> int:
    """Every run of the store is in ``tracker`` once, under its variant, with its status, per-epoch history and
    final test values; returns the tracker's entity count (to show a second export adds nothing).

    ``timings_may_differ``: a run the driver was killed in keeps the epochs it had sent, which a retrained attempt
    repeats with the same numbers (same seed) but other timings."""
    seeds, by_variant, entities = READERS[tracker](directory)
    store = store_view(directory)
    assert set(seeds) == set(store)
    for run_id, expected in store.items():
        got = seeds[run_id]
        assert got["variant"] == expected["variant"]
        assert got["status"] == expected["status"], run_id
        if expected["status"] == "failed":
            assert got.get("reason", expected["reason"]) == expected["reason"]
            continue
        assert set(got["history"]) == set(expected["history"])
        for metric, points in expected["history"].items():
            steps, values = zip(*got["history"][metric], strict=True)
            assert list(steps) == [epoch for epoch, _ in points], (run_id, metric)
            if timings_may_differ and metric in ("seconds", "step_seconds"):
                continue
            assert list(values) == pytest.approx([v for _, v in points], rel=1e-6), (run_id, metric)  # TB: float32
        test = {k: v for k, v in expected["final"].items() if k.startswith("test.")}
        assert got["final"] == pytest.approx(test, rel=1e-6)
        assert got["params"]["model.trunk.type"] == "mlp"
    assert set(by_variant) == {"shared", "independent"}
    assert by_variant["shared"]["values"]["delta_m"] == pytest.approx(_delta_m(directory, "shared"), rel=1e-6)
    return entities


def _delta_m(directory: Path, variant: str) -> float:
    from mtlab.report.tables import load_study, summary_frame

    summary = summary_frame(load_study(directory)).set_index("variant")
    return float(summary.loc[variant, "delta_m"])


# ------------------------------------------------------------------------------------------------- after the fact


def test_every_registered_tracker_has_a_reader_here():
    assert set(TRACKERS.names()) <= set(READERS), "add a reader for the new tracker to READERS"


@pytest.mark.parametrize("tracker", TRACKERS.names())
def test_an_export_reads_back_equal_to_the_store_and_a_second_one_adds_nothing(finished_study, tmp_path, tracker):
    directory = tmp_path / "study"
    shutil.copytree(finished_study, directory)
    (directory / "report.html").write_text("<html>the report</html>")
    destinations = export_study(directory, [tracker])
    assert list(destinations) == [tracker]
    entities = assert_matches_store(directory, tracker)
    assert export_study(directory, [tracker]) == destinations
    assert assert_matches_store(directory, tracker) == entities  # nothing new
    with ResultStore(directory / "results.sqlite") as store:
        rows = store.tracked(tracker, destinations[tracker])
    assert {r.status for k, r in rows.items() if k in store_view(directory)} == {"done", "failed"}


@pytest.mark.slow
def test_mlflow_layout_tags_artifacts_and_failure_reason(finished_study, tmp_path):
    directory = tmp_path / "study"
    shutil.copytree(finished_study, directory)
    (directory / "report.html").write_text("<html>the report</html>")
    export_study(directory, ["mlflow"])
    seeds, parents, _ = read_mlflow(directory)
    failed = [s for s in seeds.values() if s["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["reason"] == DIVERGED
    assert all(s["artifacts"] == ["config.yaml"] for s in seeds.values())
    assert all(p["artifacts"] == ["report.html"] and p["status"] == "FINISHED" for p in parents.values())
    assert {s["tag_variant"] for s in seeds.values()} == {"shared", "independent"}
    assert all(s["params"]["train.epochs"] == "2" for s in seeds.values())


def test_wandb_groups_seeds_by_variant_offline_with_failures_exiting_nonzero(finished_study, tmp_path):
    directory = tmp_path / "study"
    shutil.copytree(finished_study, directory)
    export_study(directory, ["wandb"])
    seeds, _, _ = read_wandb(directory)
    assert {(s["status"], s["exit"]) for s in seeds.values()} == {("done", 0), ("failed", 1)}
    assert not list((directory / "wandb").glob("run-*"))  # nothing online


def test_an_old_store_gains_the_tracked_table(finished_study, tmp_path):
    directory = tmp_path / "study"
    shutil.copytree(finished_study, directory)
    db = sqlite3.connect(directory / "results.sqlite")
    db.execute("DROP TABLE tracked")
    db.commit()
    db.close()
    export_study(directory, ["tensorboard"])
    assert_matches_store(directory, "tensorboard")


def test_a_missing_client_is_one_line_naming_the_extra(finished_study, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["export", str(finished_study), "--format", "mlflow", "--to", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mtlab: error: tracking with mlflow needs its client: pip install 'mtlab[mlflow]'"]
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------------------------------------------------- live


@pytest.mark.slow
def test_live_tracking_through_the_process_pool(tmp_path):
    directory = tmp_path / "study"
    run_study(tiny_spec(), directory, workers=2, group_seeds="off", track=["mlflow", "tensorboard"])
    with ResultStore(directory / "results.sqlite") as store:
        for tracker, destination in (("mlflow", f"sqlite:///{directory / 'mlflow.db'}"),
                                     ("tensorboard", str(directory / "tensorboard"))):  # fmt: skip
            rows = store.tracked(tracker, destination)
            assert {rows[r].status for r in store.statuses()} == {"done"}
            assert {rows[r].epochs for r in store.statuses()} == {2}  # every epoch, as it arrived
    export_study(directory, ["mlflow", "tensorboard"])  # the variants' Δm
    for tracker in ("mlflow", "tensorboard"):
        assert_matches_store(directory, tracker)


@pytest.mark.slow
def test_a_resumed_study_neither_duplicates_nor_loses_runs_in_the_tracker(tmp_path):
    """The driver dies after the first epoch of a run (as on a kill); resuming retrains that run and the tracker
    shows every run once with every epoch once."""
    directory = tmp_path / "study"
    killed = []

    def dies_in_independent_seed_0(configs, outs, observers, **kwargs):
        class Dying:
            def __init__(self, inner):
                self.inner = inner

            def on_fit_start(self, epochs, batches):
                self.inner.on_fit_start(epochs, batches)

            def on_batch_end(self, epoch, batch):
                self.inner.on_batch_end(epoch, batch)

            def on_epoch_end(self, record):
                self.inner.on_epoch_end(record)
                if not killed:
                    killed.append(record["epoch"])
                    raise KeyboardInterrupt

        if not killed and (configs[0].model.sharing, configs[0].seed) == ("independent", 0):
            observers = [Dying(o) for o in observers]
        return train_runs(configs, outs, observers=observers, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_spec(), directory, group_seeds="off", train=dies_in_independent_seed_0, track=["mlflow"])
    assert killed == [1]
    seeds, _, _ = read_mlflow_partial(directory)
    assert len(seeds) == 3  # two finished, one killed after epoch 1 (its epoch 1 sent)
    run_study(tiny_spec(), directory, group_seeds="off", train=dies_in_independent_seed_0, track=["mlflow"])
    export_study(directory, ["mlflow"])
    assert_matches_store(directory, "mlflow", timings_may_differ=True)  # four runs, each epoch once


def read_mlflow_partial(directory: Path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    seeds = {r.data.tags["run_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    return seeds, runs, client


@pytest.mark.slow
def test_a_tracker_that_fails_mid_study_is_one_warning_and_the_next_export_catches_up(tmp_path, monkeypatch):
    from mtlab.trackers.mlflow import MlflowTracker

    calls = []
    original = MlflowTracker.log_epochs

    def disk_full_on_the_third_epoch(self, run_id, records):
        calls.append(run_id)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        original(self, run_id, records)

    monkeypatch.setattr(MlflowTracker, "log_epochs", disk_full_on_the_third_epoch)
    directory = tmp_path / "study"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_study(tiny_spec(), directory, group_seeds="off", track=["mlflow", "tensorboard"])
    tracker_warnings = [w for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(tracker_warnings) == 1
    assert "mlflow tracking stopped" in str(tracker_warnings[0].message)
    assert "No space left on device" in str(tracker_warnings[0].message)
    assert f"mtlab export {directory} --format mlflow" in str(tracker_warnings[0].message)
    assert result.trained == 4  # the study went on
    assert not result.failed
    assert len(calls) == 3  # and mlflow was left alone after failing
    seeds, _, _ = read_mlflow_partial(directory)
    assert len(seeds) == 2  # the first run finished, the second was opened when the disk filled
    monkeypatch.setattr(MlflowTracker, "log_epochs", original)
    export_study(directory, ["mlflow", "tensorboard"])
    assert_matches_store(directory, "mlflow")
    assert_matches_store(directory, "tensorboard")


def test_mtlab_train_tracks_one_run(tmp_path):
    config = tmp_path / "one.yaml"
    base = TINY["base"]
    config.write_text(json.dumps({**base, "model": {**base["model"], "sharing": "shared"}}))
    out = tmp_path / "runs" / "one"
    assert main(["train", str(config), "--out", str(out), "--track", "tensorboard"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "tensorboard" / "one"))  # in the run directory, as mtlab run
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train.loss")] == [1, 2]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [e.value for e in accumulator.Scalars("train.loss")] == pytest.approx([r["train.loss"] for r in history])
    metrics = json.loads((out / "metrics.json").read_text())
    assert accumulator.Scalars("test.item.acc")[-1].value == pytest.approx(metrics["test"]["test.item.acc"])


# ----------------------------------------------------------------------------------------------------------- Ray


@pytest.fixture
def ray_home(tmp_path, monkeypatch):
    """Ray writes under HOME (``~/.ray``, redirected for every test here) and its temp dir: keep that here too."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray cluster at a time (see test_executors)
def test_live_tracking_through_a_ray_cluster(tmp_path, ray_home, ray_cluster):  # noqa: F811
    directory = tmp_path / "study"
    run_study(tiny_spec(), directory, executor="ray", address=ray_cluster, group_seeds="off", workers=2,
              track=["mlflow"])  # fmt: skip
    with ResultStore(directory / "results.sqlite") as store:
        rows = store.tracked("mlflow", f"sqlite:///{directory / 'mlflow.db'}")
        assert {rows[r].epochs for r in store.statuses()} == {2}
    export_study(directory, ["mlflow"])
    assert_matches_store(directory, "mlflow")



@pytest.mark.slow
def test_an_export_whose_tracker_fails_says_so_and_exits_2(finished_study, tmp_path, monkeypatch, capsys):
    from mtlab.trackers.mlflow import MlflowTracker

    def server_down(self, *args):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(MlflowTracker, "open_run", server_down)
    directory = tmp_path / "study"
    shutil.copytree(finished_study, directory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", str(directory), "--format", "mlflow"]) == 2
    (warning,) = [str(w.message) for w in caught if issubclass(w.category, TrackerWarning)]
    assert warning.startswith("mlflow tracking stopped (")
    assert "ConnectionError: Connection refused" in warning
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mtlab: error: --format mlflow: the export did not finish; run the same command again"]
    with ResultStore(directory / "results.sqlite") as store:  # nothing recorded as sent
        assert set(store.tracked("mlflow", f"sqlite:///{directory.resolve() / 'mlflow.db'}")) <= {"study"}


# --------------------------------------------------------------------------------------- a tracker that cannot start


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["run", "train"])
def test_an_mlflow_store_that_refuses_to_start_is_one_error_line_before_any_training(tmp_path, monkeypatch, capsys,
                                                                                    command):
    # MLflow 3 refuses a plain-file store (the MLflow 2 default many setups still name in MLFLOW_TRACKING_URI).
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    if command == "run":
        (tmp_path / "tiny.yaml").write_text(json.dumps(TINY))
        args = ["run", str(tmp_path / "tiny.yaml"), "--no-report"]
    else:
        (tmp_path / "one.yaml").write_text(json.dumps(TINY["base"]))
        args = ["train", str(tmp_path / "one.yaml")]
    out = tmp_path / "out" / "study"
    assert main([*args, "--out", str(out), "--track", "mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"mtlab: error: mlflow tracking cannot start at {(tmp_path / 'mlruns').as_uri()}: ")
    assert "sqlite:///mlflow.db" in err[0]  # MLflow's own advice, both ways out
    assert "MLFLOW_ALLOW_FILE_STORE=true" in err[0]
    assert "unset it for mtlab's default" in err[0]
    assert not (tmp_path / "out").exists()  # nothing trained or written
    assert not (tmp_path / "mlruns").exists()


def test_an_mlflow_server_that_does_not_answer_is_one_error_line_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # no back-off: the test needs no minute of retries
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY))
    server = f"http://127.0.0.1:{_free_port()}"
    study = tmp_path / "study"
    assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(study), "--track", "mlflow", "--track-to", server,
                 "--no-report"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"mtlab: error: mlflow tracking cannot start at {server}: MlflowException: ")
    assert "Connection refused" in err[0]
    assert not study.exists()


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_tracker_directory_that_cannot_be_made_is_one_error_line_before_any_training(tmp_path, capsys, tracker):
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY))
    (tmp_path / "a-file").write_text("in the way")
    study = tmp_path / "study"
    assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(study), "--track", tracker, "--track-to",
                 str(tmp_path / "a-file" / "logs"), "--no-report"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mtlab: error: {tracker} tracking cannot start at {tmp_path / 'a-file' / 'logs'}: "
                   f"NotADirectoryError: [Errno 20] not a directory: '{tmp_path / 'a-file'}'"]  # fmt: skip
    assert not study.exists()
