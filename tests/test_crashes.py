"""Signals and crashes: SIGINT / SIGTERM stop a study cleanly and the same command resumes; 20 SIGKILLs at random
moments lose nothing and change no number; files are replaced whole; reports read one snapshot of a live store."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtlab import atomic
from mtlab.cli.main import main
from mtlab.study.spec import StudySpec, expand
from mtlab.study.store import ResultStore
from mtlab.train.rundir import is_finished, load_checkpoint
from processes import mtlab_process as _mtlab
from processes import run_statuses

STUDY = {
    "name": "crash",
    "seeds": 2,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 200},
        "model": {"trunk": {"type": "mlp", "widths": [16]}, "head": {"widths": [8]}},
        "train": {"epochs": 2, "batch_size": 64, "threads": 1},  # tiny nets: one thread is fastest, on a busy CPU too
    },
    "grid": {"model.sharing": ["shared", "independent"], "optim.lr": [0.001, 0.003]},
    "control": {"match": {"model.sharing": "independent"}},
}
RUNS = 8


def _spec_file(directory: Path) -> Path:
    path = directory / "crash.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


def _done(directory: Path) -> set[str]:
    return {r for r, s in run_statuses(directory).items() if s == "done"}


def _final_metrics(directory: Path) -> pd.DataFrame:
    with ResultStore(directory / "results.sqlite") as store:
        frame = store.metrics_frame()
    return frame.sort_values(["run_id", "split", "task", "metric"]).reset_index(drop=True)


def _check_consistent(directory: Path) -> dict[str, float]:
    """The store is whole, and every run it calls done has its final files whole: ``{run_id: finished time}``."""
    with ResultStore(directory / "results.sqlite") as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        runs = store.runs_frame()
        metrics = store.metrics_frame()
    done = runs[runs.status == "done"]
    for run in done.itertuples():
        run_dir = directory / run.run_dir
        assert is_finished(run_dir), run_dir
        recorded = json.loads((run_dir / "metrics.json").read_text())["test"]
        stored = metrics[(metrics.run_id == run.run_id) & (metrics.split == "test")]
        assert len(stored) == len(recorded)
        assert "state_dict" in load_checkpoint(run_dir / "checkpoint.pt")
    return dict(zip(done.run_id, done.finished, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "said", "executor"),
    [
        # The two ways a driver trains: its pool of worker processes (the default on a multi-core machine) and in its
        # own process, one run at a time. Both stop the same way whichever signal arrives (the command line turns
        # SIGTERM into the KeyboardInterrupt of ^C), so each signal is sent to one of them.
        (signal.SIGINT, 130, "interrupted", ["--workers", "2"]),
        (signal.SIGTERM, 143, "terminated (SIGTERM)", ["--workers", "1", "--group-seeds", "off"]),
    ],
)
def test_a_signal_stops_the_study_cleanly_and_the_same_command_resumes(tmp_path, signum, code, said, executor):
    spec = _spec_file(tmp_path)
    out = tmp_path / "study"
    argv = ["run", str(spec), "--out", str(out), "--no-report", *executor]
    driver = _mtlab(*argv, cwd=tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline and driver.poll() is None:
        statuses = set(run_statuses(out).values())
        if {"done", "running"} <= statuses:  # a run is in flight, another finished
            break
        time.sleep(0.02)
    assert driver.poll() is None, driver.communicate()
    driver.send_signal(signum)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == code, err
    assert "Traceback" not in err
    assert "running" not in run_statuses(out).values()  # the runs in flight went back to pending
    before = _check_consistent(out)
    kept = len(before)
    assert 0 < kept < RUNS
    assert err.strip().splitlines()[-1] == (
        f"mtlab: {said} - {kept} run{'s' if kept != 1 else ''} kept; run the same command to resume"
    )
    assert not (out / ".lock").read_text()  # the lock was released on the way out

    # Reports and exports of the stopped study say what is missing, and count the runs left.
    assert main(["export", str(out)]) == 0
    runs = pd.read_csv(out / "export" / "runs.csv")
    assert (runs.status == "done").sum() == kept
    assert runs.loc[runs.status == "done", "test.item.acc"].notna().all()

    resume = _mtlab(*argv, cwd=tmp_path)
    stdout, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err
    assert f"trained {RUNS - kept} now" in stdout
    after = _check_consistent(out)
    assert len(after) == RUNS
    assert all(after[r] == before[r] for r in before)  # finished runs were not redone
    with ResultStore(out / "results.sqlite") as store:
        runs = store.runs_frame()
    assert (runs[runs.run_id.isin(before)].attempts == 1).all()


@pytest.mark.slow
def test_sigint_stops_a_driver_started_while_the_tests_ignore_sigint(tmp_path):
    """A test run started as a shell's background job ignores SIGINT; the driver it starts must still stop on it."""
    spec = _spec_file(tmp_path)
    out = tmp_path / "study"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what the background job's children inherit
    try:
        driver = _mtlab("run", str(spec), "--out", str(out), "--no-report", "--workers", "1", cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 120
        while "running" not in run_statuses(out).values() and time.time() < deadline and driver.poll() is None:
            time.sleep(0.02)
        assert driver.poll() is None, driver.communicate()
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("mtlab: interrupted")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()


def test_report_and_export_of_an_unfinished_study_count_the_runs_left(tmp_path, capsys):
    spec = StudySpec.model_validate(STUDY)
    runs = expand(spec)
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.set_info(name=spec.name, spec=spec.model_dump(mode="json"))
        store.sync_runs(runs)
        store.mark_running(runs[0].run_id, Path("runs") / runs[0].run_id)
    assert main(["export", str(tmp_path)]) == 0
    assert f"note: {RUNS} of {RUNS} runs unfinished" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 0
    assert f"note: {RUNS} of {RUNS} runs unfinished" in capsys.readouterr().err


def test_a_snapshot_does_not_see_what_a_driver_records_meanwhile(tmp_path):
    spec = StudySpec.model_validate(STUDY)
    runs = expand(spec)
    with ResultStore(tmp_path / "results.sqlite") as driver, ResultStore(tmp_path / "results.sqlite") as reader:
        driver.sync_runs(runs)
        with reader.snapshot():
            first = reader.statuses()
            driver.mark_running(runs[0].run_id, Path("runs/x"))  # a write lands between two reads
            assert reader.statuses() == first
            assert reader.runs_frame().status.tolist() == ["pending"] * RUNS
        assert reader.statuses()[runs[0].run_id] == "running"  # the next read sees it


# ------------------------------------------------------------------------------------------------- SIGKILL x 20

KILLS = 20
# Imported once by the fork server (torch.optim imports torch._dynamo on first use: seconds, on a busy machine).
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "mtlab.cli.main", "mtlab.study.runner", "mtlab.train.run"]


def _last_start(directory: Path) -> float:
    """When the driver last marked a run running (0 before it has)."""
    path = directory / "results.sqlite"
    if not path.exists():
        return 0.0
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT COALESCE(MAX(started), 0) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0.0
    finally:
        db.close()


@pytest.mark.slow
def test_twenty_kills_at_random_moments_lose_nothing_and_change_no_number(tmp_path):
    """SIGKILL a study driver at 20 random moments, resuming each time; then compare with an uninterrupted run.

    Drivers are forked from a server that has already imported mtlab and torch (``forkserver``), so a start costs
    milliseconds instead of an interpreter start. Each kill waits for the driver to start a run, then strikes at
    a random moment within 1.5 runs' time (measured on the uninterrupted reference): in the training, the
    writing of the run's files, the store's transaction or the start of the next run - wherever the machine's
    speed puts it. Runs are trained one by one (``--group-seeds off``) so that every run is its own record.
    """
    spec = _spec_file(tmp_path)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)

    def driver(directory: Path) -> multiprocessing.Process:
        # In the driver's own process (--workers 1): a pool's workers would each start an interpreter, and a kill
        # would land in their start-up. Pool workers dying with a killed driver: test_executors.py.
        argv = ["run", str(spec), "--out", str(directory), "--no-report", "--group-seeds", "off", "--workers", "1"]
        process = context.Process(target=main, args=(argv,))
        process.start()
        return process

    reference = driver(clean)
    reference.join(timeout=300)
    assert reference.exitcode == 0
    with ResultStore(clean / "results.sqlite") as store:
        runs = store.runs_frame()
    run_seconds = float((runs.finished - runs.started).median())

    moments = random.Random(14)
    finished: dict[str, float] = {}
    in_flight = 0  # kills that cut a run short (it stays 'running' in the store until the next driver redoes it)
    for _ in range(KILLS):
        since = _last_start(killed)
        process = driver(killed)
        deadline = time.time() + 120
        while _last_start(killed) == since and process.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(moments.uniform(0.0, 1.5 * run_seconds))
        process.kill()
        process.join()
        in_flight += "running" in run_statuses(killed).values()
        if (killed / "results.sqlite").exists():
            now = _check_consistent(killed)
            assert all(now[r] == finished[r] for r in finished)  # once recorded, a run is never redone or lost
            finished = now
    assert in_flight >= 5, in_flight  # the kills landed in the study's work, not only in start-ups and exits
    final = driver(killed)
    final.join(timeout=300)
    assert final.exitcode == 0

    done = _check_consistent(killed)
    assert len(done) == RUNS
    assert not list(killed.glob("runs/*/.*.tmp-*"))  # a retrained run clears what a killed writer left
    with ResultStore(killed / "results.sqlite") as store:
        assert len(store.runs_frame()) == RUNS  # every run recorded once
    pd.testing.assert_frame_equal(_final_metrics(killed), _final_metrics(clean))


# ----------------------------------------------------------------------------------------------- atomic files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic.write_text(path, "old")

    def write_half() -> None:
        with atomic.replacing(path) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_half()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_writer_killed_at_random_moments_leaves_the_old_or_the_new_file(tmp_path):
    """A process rewriting a 4 MB file over and over, SIGKILLed 10 times: the file is always one whole version."""
    path = tmp_path / "checkpoint.pt"
    writer = textwrap.dedent(
        f"""
        import sys
        from mtlab import atomic
        print("ready", flush=True)
        for i in range(10**6):
            atomic.write_bytes({str(path)!r}, bytes([i % 256]) * (4 * 2**20))
        """
    )
    moments = random.Random(7)
    for _ in range(10):
        process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "ready\n"
        time.sleep(moments.uniform(0.0, 0.3))
        process.kill()
        process.wait()
        if path.exists():
            content = path.read_bytes()
            assert len(content) == 4 * 2**20
            assert content == content[:1] * len(content)
    assert path.exists()
