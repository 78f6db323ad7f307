"""Study executors: a pool of worker processes and a real Ray cluster on loopback give the in-process numbers,
survive a killed worker (one retry, then only its runs fail), and leave a study that resumes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtlab.errors import MtlabError
from mtlab.execute import auto_workers, create_executor
from mtlab.execute.local import LocalExecutor
from mtlab.execute.processes import ProcessExecutor, exit_reason
from mtlab.execute.work import GroupResult, GroupTask, RunResult
from mtlab.study.runner import run_study
from mtlab.study.spec import StudySpec
from mtlab.study.store import ResultStore
from processes import mtlab_process as _mtlab

SMALL = {
    "name": "small",
    "seeds": 2,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 200},
        "model": {"trunk": {"type": "mlp", "widths": [16]}, "head": {"widths": [8]}},
        "train": {"epochs": 2, "batch_size": 64},
    },
    "variants": {
        "mlp": {},
        "cnn": {"set": {"model.trunk": {"type": "cnn", "conv": [{"filters": 4, "pool": 2}], "dense": [16]}}},
    },
    "grid": {"model.sharing": ["shared", "independent"]},
}


def _by_variant_and_seed(directory: Path):
    with ResultStore(directory / "results.sqlite") as store:
        frame = store.metrics_frame()
        runs = store.runs_frame()
        info = store.info()
    return frame.sort_values(["variant", "seed", "split", "task", "metric"]).reset_index(drop=True), runs, info


@pytest.mark.slow
def test_a_pool_of_two_workers_gives_the_in_process_numbers(tmp_path):
    spec = StudySpec.model_validate(SMALL)
    run_study(spec, tmp_path / "pool", workers=2)
    # The reference: one process that trains with the pool's thread count (train.threads=1).
    spec_path = tmp_path / "small.yaml"
    spec_path.write_text(yaml.safe_dump(SMALL))
    inline_run = _mtlab("run", str(spec_path), "--out", str(tmp_path / "inline"), "--workers", "1", "--no-report",
                        "train.threads=1", cwd=tmp_path)  # fmt: skip
    assert inline_run.wait(timeout=300) == 0, inline_run.communicate()
    pool, pool_runs, pool_info = _by_variant_and_seed(tmp_path / "pool")
    inline, _, inline_info = _by_variant_and_seed(tmp_path / "inline")
    identity = ["variant", "seed", "split", "task", "metric"]
    assert len(pool) == len(inline) > 0
    assert pool[identity].equals(inline[identity])
    # Accuracies and confusion counts are equal; losses agree to float rounding: a conv run's last bits depend on
    # what its process computed before (memory alignment of the allocator's blocks), and a worker's history differs
    # from the single process's.
    acc = pool.metric == "acc"
    assert pool[acc].value.tolist() == inline[acc].value.tolist()
    assert pool.value.to_numpy() == pytest.approx(inline.value.to_numpy(), rel=1e-5, abs=1e-6)
    assert pool_info["executor"] == {"executor": "processes", "workers": 2, "threads": 1, "gpus": 0}
    assert inline_info["executor"]["executor"] == "local"
    envs = [json.loads(e) for e in pool_runs.environment]
    assert {e["cpu_threads"] for e in envs} == {1}
    assert len({e["worker"] for e in envs}) == 2  # both workers trained
    from mtlab.report import build_report

    report = Path(build_report(tmp_path / "pool")["md"]).read_text()
    assert "processes: 2 worker(s) x 1 thread(s), 2 worker process(es) trained the runs; 1 thread(s) per run" in report
    for run_dir in (tmp_path / "pool" / "runs").iterdir():  # the driver wrote complete run directories
        assert {"config.yaml", "meta.json", "metrics.json", "history.jsonl", "checkpoint.pt"} <= {
            p.name for p in run_dir.iterdir()
        }


def die_on_boom(task: GroupTask, emit) -> GroupResult:
    """A worker function for the pool tests: the task holding run ``boom`` kills its own process."""
    if "boom" in task.run_ids:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return GroupResult(task.key, [RunResult(run_id, summary={"pid": os.getpid()}) for run_id in task.run_ids])


@pytest.mark.slow
def test_a_worker_that_dies_is_retried_once_then_only_its_runs_fail():
    pool = ProcessExecutor(2, work=die_on_boom)
    try:
        tasks = [GroupTask(0, ["a"], [{}]), GroupTask(1, ["boom", "boom-mate"], [{}, {}]), GroupTask(2, ["c"], [{}])]
        for task in tasks:
            pool.submit(task)
        results = {r.key: r for r in (pool.wait(lambda e: None) for _ in tasks)}
        assert pool.deaths == {1: 2}  # the first death was retried on a fresh worker, which died too
        failed = results[1].runs
        assert [r.run_id for r in failed] == ["boom", "boom-mate"]
        assert all("killed by SIGKILL" in r.reason and "2 attempt(s)" in r.reason for r in failed)
        assert results[0].runs[0].reason is None
        assert results[2].runs[0].reason is None
        # The pool is whole again: dead workers were replaced and new work runs.
        assert all(w.process.is_alive() for w in pool.workers)
        pool.submit(GroupTask(3, ["d"], [{}]))
        assert pool.wait(lambda e: None).runs[0].reason is None
    finally:
        pool.close()
    assert not any(w.process.is_alive() for w in pool.workers)
    assert exit_reason(-9).startswith("killed by SIGKILL")
    assert exit_reason(3) == "exited with code 3"


def test_auto_workers_leave_room_for_each_runs_threads(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on CUDA auto means one worker per GPU")
    monkeypatch.setattr("mtlab.execute.usable_cores", lambda: 8)
    assert [auto_workers(t) for t in (1, 3, 16)] == [8, 2, 1]


def test_ray_without_ray_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MtlabError, match=r"needs Ray: pip install 'mtlab\[ray\]'"):
        create_executor("ray")


def test_executor_choice_and_bad_options():
    assert isinstance(create_executor("local", workers=1), LocalExecutor)
    with pytest.raises(Exception, match="--workers: must be positive"):
        create_executor("local", workers=0)
    with pytest.raises(Exception, match="--address: only with --executor ray"):
        create_executor("local", workers=1, address="auto")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers: must be positive"),
        (["--workers", "many"], "--workers: a positive number or auto"),
        (["--address", "auto"], "--address: only with --executor ray"),
    ],
)
def test_bad_executor_flags_are_one_line_errors(tmp_path, capsys, args, message):
    from mtlab.cli.main import main

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("mtlab: error: ")
    assert message in err[0]


# ----------------------------------------------------------------------------------- killing workers for real


def _slow_spec(tmp_path: Path) -> Path:
    """Six CNN runs trained one by one (conv seeds are not stacked on a CPU), long enough to be killed mid-run."""
    spec = {
        **SMALL,
        "seeds": 3,
        "variants": {"cnn": SMALL["variants"]["cnn"]},
        "base": {**SMALL["base"], "train": {"epochs": 12, "batch_size": 32}},
    }
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path



def _count(directory: Path, status: str) -> int:
    try:
        db = sqlite3.connect(directory / "results.sqlite", timeout=30)
        try:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def _processes(matches) -> list[int]:
    """Pids of this user's processes whose command line satisfies ``matches(args)``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and matches([a.decode(errors="replace") for a in args]):
                found.append(int(entry.name))
    return found


def _parent(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _kill_one_worker_mid_study(directory: Path, driver: subprocess.Popen, find_workers) -> int:
    """Once a run is done (workers up and busy), SIGKILL one worker process; returns its pid."""
    deadline = time.time() + 180
    while _count(directory, "done") < 1 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, driver.communicate()
    while time.time() < deadline:
        workers = find_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            return workers[0]
        time.sleep(0.05)
    raise AssertionError("no worker process found")


def _check_every_run_once_and_resume(spec_path: Path, directory: Path, driver, killed: int, extra: list[str]):
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    with ResultStore(directory / "results.sqlite") as store:
        runs = store.runs_frame()
        history = store.history_frame()
    assert len(runs) == 6
    assert set(runs.status) <= {"done", "failed"}
    assert runs[runs.status == "failed"].reason.notna().all()
    assert (runs.attempts == 1).all()  # the driver submitted every run once; retries are the executor's
    epochs = history[history.metric == "train.loss"].groupby("run_id").epoch.apply(list)
    assert all(e == list(range(1, 13)) for e in epochs)  # no run recorded twice
    workers = {json.loads(e)["worker"].rsplit(":", 1)[1] for e in runs[runs.status == "done"].environment}
    assert len(workers | {str(killed)}) >= 3  # a fresh worker process took over from the killed one
    again = _mtlab("run", str(spec_path), "--out", str(directory), "--no-report", *extra, cwd=directory.parent)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "trained 0 now" in out


@pytest.mark.slow
def test_killing_a_pool_worker_fails_nothing_but_its_task_which_is_redone(tmp_path):
    spec_path = _slow_spec(tmp_path)
    directory = tmp_path / "study"
    driver = _mtlab("run", str(spec_path), "--out", str(directory), "--no-report", "--workers", "2", cwd=tmp_path)

    def pool_workers() -> list[int]:
        return [
            p
            for p in _processes(lambda args: any("spawn_main" in a for a in args))
            if _parent(p) == driver.pid
        ]

    killed = _kill_one_worker_mid_study(directory, driver, pool_workers)
    _check_every_run_once_and_resume(spec_path, directory, driver, killed, ["--workers", "2"])


# --------------------------------------------------------------------------------------- a real Ray cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path_factory):
    """A real one-node Ray cluster on loopback (``ray start --head``), 2 CPUs; yields its address.

    Stopped by ending the processes of this cluster's session only (their command lines name its temp dir), then
    SIGKILL for any left after 15 s: ``ray stop`` would end every Ray cluster of this user on the machine.
    """
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        pytest.skip("Ray is not installed (pip install 'mtlab[ray]')")
    # A short path: Ray's socket paths must fit in 107 bytes.
    temp = Path(f"/tmp/mtlab-ray-{os.getpid()}-{_free_port()}")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    def session_processes() -> list[int]:
        roots = set(_processes(lambda args: any(str(temp) in a for a in args)))
        tree = set(roots)
        for pid in _processes(lambda args: True):
            parent = _parent(pid)
            while parent and parent not in tree and parent != 1:
                parent = _parent(parent)
            if parent in roots:
                tree.add(pid)
        return sorted(tree)

    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        pids = session_processes()
        for pid in pids:
            with __import__("contextlib").suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() and _parent(p) for p in pids):
            time.sleep(0.2)
        for pid in pids:
            with __import__("contextlib").suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray cluster at a time: the test kills Ray workers by their title
def test_a_study_on_a_ray_cluster_survives_a_killed_worker_and_resumes(tmp_path, ray_cluster):
    spec_path = _slow_spec(tmp_path)
    directory = tmp_path / "study"
    flags = ["--executor", "ray", "--address", ray_cluster]
    driver = _mtlab("run", str(spec_path), "--out", str(directory), "--no-report", *flags, cwd=tmp_path)

    def ray_workers() -> list[int]:  # a Ray worker's title names the task it is running
        return _processes(lambda args: args[0].startswith("ray::run_task"))

    killed = _kill_one_worker_mid_study(directory, driver, ray_workers)
    _check_every_run_once_and_resume(spec_path, directory, driver, killed, flags)
    with ResultStore(directory / "results.sqlite") as store:
        assert store.info()["executor"]["executor"] == "ray"
        assert store.info()["executor"]["cpus"] == 2


# ------------------------------------------------------------------------------- workers die with their driver

# A network whose training forward announces itself (a file named by its pid) and then takes a minute: a worker
# inside a long step, which sends the driver nothing until it ends.
SLOW_STEP = '''
import os
import time
from pathlib import Path

import torch
from torch import nn


class SlowStep(nn.Module):
    def __init__(self, outputs, input_shape, marker):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] * input_shape[-2], 4))
        self.heads = nn.ModuleDict({t: nn.Linear(4, n) for t, n in outputs.items()})
        self.marker = Path(marker)

    def forward(self, x):
        if self.training:  # a training step, not the build-time probe (eval mode)
            (self.marker / str(os.getpid())).touch()
            time.sleep(60)
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}


def build(task_outputs, input_shape, marker):
    return SlowStep(task_outputs, input_shape, marker)
'''


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its new parent to reap it has ended)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_exit_within_a_second_or_two_of_a_kill_9_of_their_driver(tmp_path):
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    marker = tmp_path / "in-a-step"
    marker.mkdir()
    spec = {
        "name": "orphans",
        "seeds": 1,
        "base": {
            "data": {"dataset": "fashion-mnist-sample", "train_subset": 100, "test_subset": 50},
            "model": {"kind": "custom", "factory": str(tmp_path / "slow_step.py:build"),
                      "options": {"marker": str(marker)}, "stack": "never"},
            "train": {"epochs": 1, "batch_size": 50},
        },
        "grid": {"optim.lr": [0.01, 0.02]},  # two runs, one a worker
    }  # fmt: skip
    (tmp_path / "orphans.yaml").write_text(yaml.safe_dump(spec))
    driver = _mtlab("run", "orphans.yaml", "--out", "study", "--no-report", "--workers", "2", cwd=tmp_path)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while len(list(marker.iterdir())) < 2 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.05)
        assert driver.poll() is None, driver.communicate()
        workers = [p for p in _processes(lambda args: any("spawn_main" in a for a in args)) if _parent(p) == driver.pid]
        assert sorted(workers) == sorted(int(p.name) for p in marker.iterdir())  # both workers are mid-step
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        time.sleep(2)
        assert [p for p in workers if _alive(p)] == []
    finally:  # workers first: they hold the driver's output pipes open
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()
        driver.communicate()


def test_an_outside_executor_written_against_the_old_import_path_still_loads():
    """Executors moved from mtlab.study.executors to mtlab.execute; a plug-in importing the old path gets the same
    registry and classes (not copies)."""
    from mtlab.study.executors.local import LocalExecutor as OldLocal

    import mtlab.execute
    import mtlab.execute.local
    from mtlab.study.executors import EXECUTORS as old_registry

    assert old_registry is mtlab.execute.EXECUTORS
    assert OldLocal is mtlab.execute.local.LocalExecutor
