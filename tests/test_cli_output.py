"""The command's output in a terminal and in a log: light commands answer without the heavy libraries, and piped
output (a log, a CI job) is plain lines and whole tables, never half-drawn bars or times cut to ``0:…``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console

import mtlab
from mtlab.cli.progress import PlainStudyProgress, RichStudyProgress, _progress, study_progress
from mtlab.study.catalog import builtin_study_paths
from mtlab.study.outline import read_outline

HEAVY = ("torch", "pandas", "matplotlib")
SRC = str(Path(mtlab.__file__).resolve().parents[1])


def _mtlab(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m mtlab ARGV`` with stdout and stderr captured (pipes, not a terminal)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "mtlab", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


LIGHT = [["--help"], ["studies"]] + [
    [command, "--help"] for command in ("run", "train", "report", "export", "search", "data", "tasks", "weightings")
]


def test_light_commands_import_no_torch_pandas_or_matplotlib():
    """`mtlab --help` and `mtlab studies` answer in well under a second: they must not import the heavy libraries
    (torch alone takes seconds). Checked in a fresh interpreter, after each command."""
    script = f"""
import contextlib, io, json, sys
from mtlab.cli.main import main
loaded = {{}}
for argv in {LIGHT!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
    loaded[" ".join(argv)] = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps(loaded))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {" ".join(argv): [] for argv in LIGHT}


def test_analyze_builds_its_analyses_when_run():
    """`mtlab analyze` adds its analyses (which import torch) only when it is the command given."""
    done = _mtlab("analyze", "--help")
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in ("pca", "separability", "transfer"))


@pytest.mark.parametrize("name", sorted(builtin_study_paths()))
def test_study_outline_counts_the_runs_expand_gives(name):
    """`mtlab studies` counts runs from the YAML alone; the counts are the study's own."""
    from mtlab.study.spec import expand, load_study_spec

    path = builtin_study_paths()[name]
    spec = load_study_spec(path)
    outline = read_outline(path)
    assert (outline.name, outline.description) == (spec.name, spec.description)
    assert outline.runs == {budget: len(expand(spec, budget)) for budget in spec.budgets}


def test_piped_tables_are_not_wrapped():
    done = _mtlab("studies")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for path in builtin_study_paths().values():
        description = read_outline(path).description
        assert any(description in line for line in lines), f"{description!r} was wrapped"
    assert max(len(line) for line in lines) > 80


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_bars_keep_counts_and_times_whole_on_a_narrow_terminal(width):
    """rich shrinks every column of a too-wide row (times became `0:…`); only descriptions and metrics may be cut."""
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress = _progress(console)
    runs = progress.add_task("study runs", total=24, metrics="last: two-head, lambda=0.3 s1 done (" + "x" * 80 + ")")
    progress.add_task("  two-head, lambda=0.3 (3 seeds)", total=5, metrics="val loss 0.512  " + "item 85.12%  " * 9)
    progress.update(runs, advance=3)
    console.print(progress.make_tasks_table(progress.tasks))
    lines = console.file.getvalue().splitlines()
    assert len(lines) == 2
    for line, count in zip(lines, ("3/24", "0/5"), strict=True):
        assert len(line) <= width
        assert all(part in line for part in (count, "0:00:00", "-:--:--"))


def test_study_progress_is_plain_lines_when_piped():
    stream = io.StringIO()
    assert isinstance(study_progress(Console(file=stream)), PlainStudyProgress)
    assert isinstance(study_progress(Console(file=stream, force_terminal=True)), RichStudyProgress)

    progress = PlainStudyProgress(stream)
    progress.on_study_start(total=5, done=2, todo=3)
    for seed, reason in ((0, None), (1, "diverged")):
        progress.on_run_end(SimpleNamespace(variant="two-head, lambda=0.3", seed=seed), "failed" if reason else "done",
                            reason)  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert lines[0] == "study: 3 runs to train (2 of 5 already done)"
    assert lines[1].startswith("run 1/3 done: two-head, lambda=0.3 s0  elapsed 0:00:00, remaining ~0:00:0")
    assert lines[2].startswith("run 2/3 failed: two-head, lambda=0.3 s1 (diverged)  elapsed 0:00:00, remaining ~")


TINY_BASE = {
    "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
    "model": {"trunk": {"type": "mlp", "widths": [8]}},
    "train": {"epochs": 2, "batch_size": 100},
}


def _no_bars(done: subprocess.CompletedProcess) -> None:
    """No control characters anywhere; no bar (rich draws it with ``━``) in the progress, on stderr."""
    assert not any(c in done.stdout + done.stderr for c in "\r\x1b")
    assert "━" not in done.stderr


def test_piped_train_prints_a_line_per_epoch(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"name": "tiny", **TINY_BASE}))
    done = _mtlab("train", str(config), "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    _no_bars(done)
    epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all("val loss" in line and "item" in line and ", remaining ~" in line for line in epochs)
    assert "weighting: fixed; diagnostics: off" in done.stdout.splitlines()
    assert any("parameters (shared" in line and "best epoch" in line for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    ("loss", "diagnostics", "shown"),
    [
        (
            {"weights": {"item": 0.7, "group": 0.3}},
            None,
            "weighting: fixed, weights item 0.7, group 0.3; diagnostics: off",
        ),
        ({"method": "cagrad", "c": 0.4}, {"every": 5}, "weighting: cagrad (c=0.4); diagnostics: on, every 5 steps"),
        ({"method": "cagrad"}, {"layers": True}, "weighting: cagrad; diagnostics: on, every 10 steps, per layer"),
    ],
)
def test_train_summary_names_the_weighting_and_the_diagnostics(loss, diagnostics, shown):
    from mtlab.cli.train_cmd import training_setup
    from mtlab.config import parse_config

    config = parse_config({**TINY_BASE, "loss": loss, "train": {"diagnostics": diagnostics}})
    assert training_setup(config) == shown


@pytest.mark.slow
def test_piped_study_prints_a_line_per_finished_run(tmp_path):
    study = tmp_path / "tiny-study.yaml"
    study.write_text(yaml.safe_dump({"name": "tiny-study", "seeds": 2, "base": {**TINY_BASE, "train": {
        **TINY_BASE["train"], "epochs": 1}}, "variants": {"a": {}, "b": {"set": {"optim.lr": 0.01}}}}))  # fmt: skip
    out = str(tmp_path / "study")
    done = _mtlab("run", str(study), "--out", out, "--no-report", "--group-seeds", "off", "--workers", "1")
    assert done.returncode == 0, done.stderr
    _no_bars(done)
    lines = done.stderr.splitlines()
    assert lines[0] == "study: 4 runs to train"
    assert [line.split(":")[0] for line in lines[1:]] == ["run 1/4 done", "run 2/4 done", "run 3/4 done",
                                                          "run 4/4 done"]  # fmt: skip
    assert all("elapsed " in line and "remaining ~" in line for line in lines[1:])
