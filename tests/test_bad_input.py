"""Bad input, swept: every case ends in exit code 2 and one ``mtlab: error:`` line per problem naming the file or key
and what to do, with no traceback, and writes nothing (no run or study directory for a run that never started, no
change to an existing study, run or data file).

A case is one line of ``CASES``: an id, the command line (``{ws}`` is the workspace), the text the error must hold,
and optionally how to damage the workspace first. The workspace holds a finished study, a finished conv run, a
config, a study spec, a search spec and a copy of the embedded MNIST sample laid out as ``digits/mnist`` (the
catalogue's ``mnist`` entry, whose digests a case can point at damaged files so the parser, not the checksum, sees
the damage). The Hypothesis fuzz at the end feeds the config and override loader random documents and dotted keys.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import string
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlab.cli.main import main
from mtlab.config.load import apply_overrides, parse_config
from mtlab.config.schema import RunConfig
from mtlab.data.idx import read_bytes, read_idx, write_idx
from mtlab.data.resolve import embedded_dir, user_cache_root
from mtlab.data.sources import SOURCES
from mtlab.errors import MtlabError
from mtlab.study.runner import StudyLock, run_study
from mtlab.study.spec import StudySpec
from mtlab.train.run import train_run

TINY_DATA = {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100}
TINY_RUN = {
    "name": "tiny",
    "data": TINY_DATA,
    "model": {"trunk": {"type": "mlp", "widths": [8]}},
    "train": {"epochs": 1, "batch_size": 50},
}
CONV_RUN = {**TINY_RUN, "model": {"trunk": {"type": "cnn", "conv": [{"filters": 2, "kernel": 3, "pool": 2}]}}}
DIGITS_RUN = {**TINY_RUN, "data": {"dataset": "mnist", "data_dir": "digits", "download": False, "train_subset": 200}}
STUDY = {
    "name": "tiny-study",
    "seeds": 1,
    "base": TINY_RUN,
    "grid": {"model.sharing": ["shared", "independent"]},
    "control": "independent",
    "budgets": {"quick": {"set": {"train.epochs": 1}}},
}
SEARCH = {
    "name": "tiny-search",
    "base": {"data": TINY_DATA, "train": {"epochs": 1, "batch_size": 50}},
    "space": {"type": "mlp", "depth": {"low": 1, "high": 2}, "width": {"low": 8, "high": 16, "step": 8}},
    "trials": 1,
}


def _yaml(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def template(built_once) -> Path:
    """A workspace made once for the session; each case works on a fresh copy."""
    return built_once("test_bad_input-template", _make_template)


def _make_template(ws: Path) -> Path:
    _yaml(ws / "tiny.yaml", TINY_RUN)
    _yaml(ws / "digits.yaml", DIGITS_RUN)
    _yaml(ws / "study.yaml", STUDY)
    _yaml(ws / "search.yaml", SEARCH)
    run_study(StudySpec.model_validate(STUDY), ws / "study")
    train_run(RunConfig.model_validate(CONV_RUN), out=ws / "run")
    digits = ws / "digits" / "mnist"
    digits.mkdir(parents=True)
    for path in embedded_dir(SOURCES["mnist-sample"]).glob("*.gz"):
        shutil.copy(path, digits)
    return ws


HELD_LOCKS: list[StudyLock] = []  # study locks a case holds, as another driver would; released after the case


@pytest.fixture
def workspace(template, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    monkeypatch.chdir(ws)  # default output directories (runs/...) land in the workspace, where they are seen
    monkeypatch.delenv("MTLAB_DATA", raising=False)  # data only from where a case points
    yield ws
    while HELD_LOCKS:
        HELD_LOCKS.pop().__exit__(None, None, None)


def tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every directory (None) and file (size, mtime) under ``root``: equal trees mean nothing was written."""
    found: dict[str, tuple[int, int] | None] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            stat = os.stat(os.path.join(directory, name))
            found[os.path.relpath(os.path.join(directory, name), root)] = (stat.st_size, stat.st_mtime_ns)
    return found


# ----------------------------------------------------------------------------------------- ways to damage things

Prepare = Callable[[Path, pytest.MonkeyPatch], None]
IMAGES = "train-images-idx3-ubyte.gz"
LABELS = "train-labels-idx1-ubyte.gz"


def write(relative: str, content: bytes | str) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        path = ws / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)

    return prepare


def spec(**changes) -> Prepare:
    """The study spec with ``changes`` (``None`` removes a key), as ``bad-study.yaml``."""
    data = {k: v for k, v in {**STUDY, **changes}.items() if v is not None}
    return write("bad-study.yaml", yaml.safe_dump(data))


def config(data) -> Prepare:
    return write("bad.yaml", yaml.safe_dump(data))


def truncate(relative: str, keep: float = 0.5) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        path = ws / relative
        content = path.read_bytes()
        path.write_bytes(content[: int(len(content) * keep)])

    return prepare


def remove(relative: str) -> Prepare:
    return lambda ws, monkeypatch: (ws / relative).unlink()


def trust_digit_files(ws: Path, monkeypatch) -> None:
    """Point the ``mnist`` catalogue entry at the digests of the files in ``digits/mnist`` (damaged or not), so
    that the damage is met by the parser, the way a file with a lucky checksum would be."""
    directory = ws / "digits" / "mnist"
    files = tuple(
        dataclasses.replace(raw, digest=raw.hash(read_bytes(directory / f"{raw.name}.gz")))
        for raw in SOURCES["mnist"].files
    )
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], files=files))


def idx(name: str, change: Callable[[bytes], bytes]) -> Prepare:
    """Rewrite the decompressed IDX bytes of ``digits/mnist/<name>`` with ``change``, then trust the result."""

    def prepare(ws: Path, monkeypatch) -> None:
        path = ws / "digits" / "mnist" / name
        path.write_bytes(gzip.compress(change(gzip.decompress(path.read_bytes())), mtime=0))
        trust_digit_files(ws, monkeypatch)

    return prepare


def labels(change: Callable[[np.ndarray], np.ndarray]) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        path = ws / "digits" / "mnist" / LABELS
        write_idx(path, change(read_idx(path)))
        trust_digit_files(ws, monkeypatch)

    return prepare


def swap_labels_for_images(ws: Path, monkeypatch) -> None:
    directory = ws / "digits" / "mnist"
    shutil.copy(directory / LABELS, directory / IMAGES)
    trust_digit_files(ws, monkeypatch)


def checkpoint(obj) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        torch.save(obj, ws / "run" / "checkpoint.pt")

    return prepare


def meta_status(status: str) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        path = ws / "run" / "meta.json"
        path.write_text(path.read_text().replace('"status": "done"', f'"status": "{status}"'))

    return prepare


def hold_study_lock(ws: Path, monkeypatch) -> None:
    HELD_LOCKS.append(StudyLock(ws / "study").__enter__())


def both(*prepares: Prepare) -> Prepare:
    def prepare(ws: Path, monkeypatch) -> None:
        for p in prepares:
            p(ws, monkeypatch)

    return prepare


class Case(NamedTuple):
    id: str
    argv: list[str]
    expect: tuple[str, ...]
    prepare: Prepare | None = None
    lines: int = 1


def case(id: str, argv: str, *expect: str, prepare: Prepare | None = None, lines: int = 1) -> Case:
    return Case(id, argv.split(), expect, prepare, lines)


NOT_UTF8 = bytes(range(128, 256)) * 4
TWELVE_UNKNOWN = {**TINY_RUN, **{f"bogus{i}": i for i in range(12)}}

CASES = [
    # -------------------------------------------------------------------------------- configs and overrides
    case("config-missing", "train nope.yaml", "nope.yaml: cannot read config"),
    case("config-is-a-directory", "train study", "study: cannot read config"),
    case("config-binary", "train bad.yaml", "bad.yaml: not a YAML text file", prepare=write("bad.yaml", NOT_UTF8)),
    case("config-checkpoint-as-config", "train run/checkpoint.pt", "run/checkpoint.pt: not a YAML text file"),
    case("config-yaml-syntax", "train bad.yaml", "bad.yaml: line 1 invalid YAML", prepare=write("bad.yaml", "a: [1,")),
    case("config-not-a-mapping", "train bad.yaml", "must be a mapping", prepare=write("bad.yaml", "- 1\n- 2\n")),
    case("config-python-tag", "train bad.yaml", "invalid YAML",
         prepare=write("bad.yaml", "a: !!python/name:os.system")),
    case("config-unknown-key", "train bad.yaml", "colour: unknown key", prepare=config({**TINY_RUN, "colour": 1})),
    case("config-no-data-no-model", "train bad.yaml", "data: required key is missing", "model: required key is missing",
         prepare=config({"name": "x"}), lines=2),
    case("config-unknown-dataset", "train tiny.yaml data.dataset=imagenet",
         "command line override data.dataset=imagenet: unknown value 'imagenet'"),
    case("override-wrong-type", "train tiny.yaml train.epochs=many", "command line override train.epochs=many: Input"),
    case("override-negative-lr", "train tiny.yaml optim.lr=-1",
         "command line override optim.lr=-1: Input should be greater than 0"),
    case("override-val-fraction", "train tiny.yaml data.val_fraction=1.5", "command line override data.val_fraction="),
    case("override-unknown-key", "train tiny.yaml train.epoch=2", "command line override train.epoch=2: unknown key"),
    case("override-unknown-task", "train tiny.yaml loss.weights.colour=1", "colour"),
    case("override-reuse-unknown-task", "train tiny.yaml model.reuse=colour->item", "unknown task 'colour'"),
    case("override-not-key-value", "train tiny.yaml epochs", "override 'epochs' must look like dotted.key=value"),
    case("override-into-a-number", "train tiny.yaml train.epochs.x=1", "train.epochs: Input should be a valid integer"),
    case("override-list-index", "train tiny.yaml model.trunk.widths.5=3", "model.trunk.widths: has 1 items"),
    case("override-sharing-value", "train tiny.yaml model.sharing=some", "command line override model.sharing=some:"),
    case(
        "config-three-problems",
        "train tiny.yaml train.epochs=0 optim.lr=-1 colour=red",
        "command line override train.epochs=0: ",
        "command line override optim.lr=-1: ",
        "command line override colour=red: unknown key",
        lines=3,
    ),
    case("config-twelve-problems", "train bad.yaml", "bogus0: unknown key", "... and 2 more problems",
         prepare=config(TWELVE_UNKNOWN), lines=11),
    case("train-out-is-a-file", "train tiny.yaml --out tiny.yaml", "tiny.yaml: exists and is not a directory"),
    case("train-out-not-empty", "train tiny.yaml --out study", "study: run directory exists and is not empty"),
    case("train-negative-seed", "train tiny.yaml --seed -1", "seed"),
    # ----------------------------------------------------------------------------------------- study specs
    case("study-unknown-name", "run no-such-study", "no-such-study: no such study file and no built-in study"),
    case("study-unknown-key", "run bad-study.yaml", "bad-study.yaml:19: colour: unknown key", prepare=spec(colour=1)),
    case("study-control-no-variant", "run bad-study.yaml", "control 'nope' is not a variant",
         prepare=spec(control="nope")),
    case(
        "study-control-unknown-axis",
        "run bad-study.yaml",
        "control.match: 'model.kind' is not an axis",
        prepare=spec(control={"match": {"model.kind": "x"}}),
    ),
    case(
        "study-control-unknown-label",
        "run bad-study.yaml",
        "control.match.model.sharing: 'both' is not one of its labels",
        prepare=spec(control={"match": {"model.sharing": "both"}}),
    ),
    case(
        "study-control-unknown-task",
        "run bad-study.yaml",
        "control.per_task: 'colour' is not a task",
        prepare=spec(control={"per_task": {"colour": "shared"}}),
    ),
    case(
        "study-control-two-kinds",
        "run bad-study.yaml",
        "give exactly one of variant, match, per_task",
        prepare=spec(control={"variant": "shared", "per_task": {"item": "shared"}}),
    ),
    case("study-unknown-budget", "run study.yaml --budget huge", "budget 'huge' is not defined"),
    case("study-bad-default-budget", "run bad-study.yaml", "default_budget 'huge'",
         prepare=spec(default_budget="huge")),
    case("study-zero-seeds", "run bad-study.yaml", "seeds: needs at least one seed", prepare=spec(seeds=0)),
    case("study-bad-name", "run bad-study.yaml", "name:", prepare=spec(name="no spaces please")),
    case("study-no-base", "run bad-study.yaml", "base: required key is missing", prepare=spec(base=None)),
    case(
        "study-grid-bad-value",
        "run bad-study.yaml",
        "variant '-1': optim.lr: Input should be greater than 0",
        prepare=spec(grid={"optim.lr": [-1]}, control=None),
    ),
    case(
        "study-two-variants-same-config",
        "run bad-study.yaml",
        "two variants resolve to the same run config",
        prepare=spec(grid={"model.sharing": {"a": "shared", "b": "shared"}}, control=None),
    ),
    case("study-bad-override", "run study.yaml model.sharing=some", "command line override model.sharing=some: "),
    case("study-existing-bad-override", "run study.yaml --out study train.epochs=0",
         "command line override train.epochs=0: "),
    case("study-existing-bad-control", "run bad-study.yaml --out study", "control 'nope' is not a variant",
         prepare=spec(control="nope")),
    case("study-out-is-a-file", "run study.yaml --out tiny.yaml", "tiny.yaml: exists and is not a directory"),
    case("study-redefined-by-override", "run study.yaml --out study train.epochs=2",
         "study: this command differs from the study stored there in overrides train.epochs=2 (stored: not set)",
         "choose another --out", "--redefine"),
    case("study-redefined-by-budget", "run study.yaml --out study --budget quick", "budget quick (stored: default)"),
    case("study-out-is-a-run-dir", "run study.yaml --out run", "run: is a run directory (made by `mtlab train`)"),
    case("study-out-under-a-file", "run study.yaml --out tiny.yaml/sub", "tiny.yaml: is a file"),
    case("study-group-size", "run study.yaml --group-size 0", "--group-size: must be positive"),
    case("study-missing-data", "run bad-study.yaml --out fresh", "mnist files not found", prepare=both(
        spec(base=DIGITS_RUN), remove("digits/mnist/" + LABELS))),
    case("study-in-use", "run study.yaml --out study", "study directory is in use", prepare=hold_study_lock),
    case("study-damaged-store", "run study.yaml --out study", "study/results.sqlite: damaged results store",
         prepare=write("study/results.sqlite", b"not a database" * 100)),
    # --------------------------------------------------------------------------------------- command line
    case("cli-no-command", "", "the following arguments are required: COMMAND"),
    case("cli-unknown-command", "fly", "invalid choice: 'fly'"),
    case("cli-unknown-option", "train tiny.yaml --fast", "unrecognized arguments: --fast"),
    case("cli-bad-choice", "run study.yaml --group-seeds maybe", "argument --group-seeds: invalid choice"),
    case("cli-not-an-int", "run study.yaml --group-size many", "--group-size: invalid int value"),
    case("cli-export-format", "export study --format xml", "argument --format: invalid choice"),
    case("cli-missing-argument", "report", "the following arguments are required: STUDY_DIR"),
    # ----------------------------------------------------------------------------------- stores and run dirs
    case("report-not-a-study", "report run", "run: not a study directory (no results.sqlite in it)"),
    case("report-missing-dir", "report nowhere", "nowhere: not a study directory"),
    case("report-damaged-store", "report study", "study/results.sqlite: damaged results store", "runs/*/metrics.json",
         prepare=write("study/results.sqlite", b"not a database" * 100)),
    case("report-truncated-store", "report study", "study/results.sqlite: damaged results store",
         prepare=truncate("study/results.sqlite", 0.3)),
    case("export-damaged-store", "export study", "damaged results store",
         prepare=write("study/results.sqlite", os.urandom(8192))),
    case("export-out-is-a-file", "export study --out tiny.yaml", "tiny.yaml"),
    case("analyze-no-run-dir", "analyze filters --run nowhere", "nowhere: no such run directory"),
    case("analyze-no-checkpoint", "analyze filters --run run", "not a finished run (no checkpoint.pt)",
         prepare=remove("run/checkpoint.pt")),
    case("analyze-garbage-checkpoint", "analyze filters --run run", "run/checkpoint.pt: not a readable checkpoint",
         prepare=write("run/checkpoint.pt", b"garbage" * 64)),
    case("analyze-truncated-checkpoint", "analyze filters --run run", "run/checkpoint.pt: not a readable checkpoint",
         prepare=truncate("run/checkpoint.pt")),
    case("analyze-foreign-checkpoint", "analyze filters --run run", "not an mtlab checkpoint (no state_dict",
         prepare=checkpoint(torch.zeros(3))),
    case("analyze-unfinished-run", "analyze filters --run run", "not a finished run (meta.json does not say done",
         prepare=meta_status("running")),
    case("analyze-bad-run-config", "analyze filters --run run", "run/config.yaml: line 1 invalid YAML",
         prepare=write("run/config.yaml", "model: [")),
    case("analyze-study-as-run", "analyze filters --run study", "study: not a finished run (no config.yaml)"),
    # ---------------------------------------------------------------------------------------- dataset files
    case("data-missing-file", "train digits.yaml", "mnist files not found", "mtlab data fetch mnist",
         prepare=remove("digits/mnist/" + LABELS)),
    case("data-wrong-content", "train digits.yaml", IMAGES.removesuffix(".gz"), "has the wrong content"),
    case("data-truncated-gzip", "train digits.yaml", IMAGES, "truncated or corrupt (the gzip stream ends early)",
         prepare=truncate("digits/mnist/" + IMAGES)),
    case("data-not-gzip", "train digits.yaml", IMAGES, "truncated or corrupt",
         prepare=write("digits/mnist/" + IMAGES, b"\x00\x00\x08\x03" + bytes(100))),
    case("data-wrong-magic", "train digits.yaml", IMAGES, "magic number 0x00000999",
         prepare=idx(IMAGES, lambda b: b"\x00\x00\x09\x99" + b[4:])),
    case("data-wrong-image-count", "train digits.yaml", IMAGES, "needs 3924704 data bytes, found 3920000",
         prepare=idx(IMAGES, lambda b: b[:4] + (5006).to_bytes(4, "big") + b[8:])),
    case("data-empty-file", "train digits.yaml", IMAGES, "too short for an IDX header",
         prepare=idx(IMAGES, lambda b: b"")),
    case("data-labels-short", "train digits.yaml", LABELS, "does not hold one label 0-9 per image",
         prepare=labels(lambda a: a[:-1])),
    case("data-label-out-of-range", "train digits.yaml", "does not hold one label 0-9 per image",
         prepare=labels(lambda a: np.where(np.arange(len(a)) == 7, 12, a).astype(np.uint8))),
    case("data-labels-as-images", "train digits.yaml", "holds the wrong kind of IDX data",
         prepare=swap_labels_for_images),
    case("data-verify-named-file", "train digits.yaml data.data_dir=nowhere", "mnist files not found", "nowhere"),
    # ------------------------------------------------------------------------------ search specs and storages
    case("search-unknown-name", "search no-such-search", "no-such-search"),
    case("search-unknown-key", "search bad-search.yaml", "bad-search.yaml:9: colour: unknown key",
         prepare=write("bad-search.yaml", yaml.safe_dump({**SEARCH, "colour": 1}))),
    case("search-binary-spec", "search bad-search.yaml", "not a YAML text file",
         prepare=write("bad-search.yaml", NOT_UTF8)),
    case("search-zero-trials", "search search.yaml --trials 0", "--trials: must be positive"),
    case("search-bad-storage-url", "search search.yaml --out s --storage nope://x",
         "--storage: cannot open the storage"),
    case("search-damaged-storage", "search search.yaml --out s --storage sqlite:///bad.sqlite",
         "--storage: cannot open the storage", prepare=write("bad.sqlite", b"not a database" * 100)),
]


def test_the_sweep_has_at_least_fifty_distinct_cases():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_per_problem_exit_2_and_writes_nothing(case, workspace, monkeypatch, capsys):
    if case.prepare is not None:
        case.prepare(workspace, monkeypatch)
    before = tree(workspace)
    try:
        code = main(case.argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == case.lines, err
    assert all(line.startswith("mtlab: error: ") for line in lines), err
    for text in case.expect:
        assert text in err
    assert tree(workspace) == before  # nothing written, nothing damaged


def test_a_real_process_reports_bad_input_in_one_line(workspace):
    """The same contract through the installed entry point (no in-process shortcuts)."""
    import subprocess
    import sys

    (workspace / "bad.yaml").write_bytes(NOT_UTF8)
    before = tree(workspace)
    done = subprocess.run([sys.executable, "-m", "mtlab", "train", "bad.yaml"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "mtlab: error: bad.yaml: not a YAML text file (byte 0 is not UTF-8); pass the config file, not a binary"
    ]
    assert tree(workspace) == before


# ------------------------------------------------------------------------------ errors that say how to fix them

# Written by hand, so that the line numbers in the expected messages can be read off.
TYPO_RUN = """\
name: tiny
data:
  dataset: fashion-mnist-sample
  train_subset: 200
model:
  trunk: {type: mlp, widths: [8]}
train:
  epoch: 1
"""
FOREIGN_OPTION_RUN = """\
name: tiny
data: {dataset: fashion-mnist-sample, train_subset: 200}
model:
  trunk: {type: mlp, widths: [8]}
loss:
  method: pcgrad
  c: 0.5
"""
TYPO_DATASET_RUN = """\
data:
  dataset: fashion-mnst
model:
  trunk: {type: mlp, widths: [8]}
"""
TYPO_STUDY = """\
name: typo-study
seeds: 1
base:
  data: {dataset: fashion-mnist-sample, train_subset: 200, test_subset: 100}
  model:
    trunk: {type: mlp, widths: [8]}
  train:
    epoch: 1
grid:
  model.sharing: [shared, independent]
"""
TYPO_VARIANT_STUDY = """\
name: typo-study
seeds: 1
base:
  data: {dataset: fashion-mnist-sample, train_subset: 200, test_subset: 100}
  model:
    trunk: {type: mlp, widths: [8]}
variants:
  shared: {}
  independent:
    set:
      model.sharing: independent
      train.epoch: 1
"""
TYPO_SPEC_KEY_STUDY = """\
name: typo-study
seed: 1
base:
  data: {dataset: fashion-mnist-sample}
  model:
    trunk: {type: mlp, widths: [8]}
"""

TYPO_SEARCH = """\
name: typo-search
base:
  data: {dataset: fashion-mnist-sample, train_subset: 200}
  train: {epochs: 1, batch_size: 50}
space:
  type: mlp
  depth: {low: 1, high: 2, hihg: 3}
  width: {low: 8, high: 16}
trials: 1
"""


class Exact(NamedTuple):
    id: str
    argv: list[str]
    lines: tuple[str, ...]
    prepare: Prepare | None = None


def exact(id: str, argv: str, *lines: str, prepare: Prepare | None = None) -> Exact:
    return Exact(id, argv.split(), lines, prepare)


HOW_TO_FIX = [
    # closest matches: keys (among the fields of the section that holds them), tag values, tasks, studies, budgets
    exact("suggest-key-override", "train tiny.yaml train.epoch=2",
          "command line override train.epoch=2: unknown key; did you mean train.epochs?"),
    exact("suggest-nested-key", "train tiny.yaml model.trunk.widht=3",
          "command line override model.trunk.widht=3: unknown key; did you mean model.trunk.widths?"),
    exact("suggest-section", "train tiny.yaml trian.epochs=2",
          "command line override trian.epochs=2: trian: unknown key; did you mean train?"),
    exact("suggest-loss-method", "train tiny.yaml loss.method=pcgard",
          "command line override loss.method=pcgard: unknown value 'pcgard'; did you mean 'pcgrad'?"),
    exact("suggest-dataset", "train tiny.yaml data.dataset=fashion-mnist-sampel",
          "command line override data.dataset=fashion-mnist-sampel: unknown value 'fashion-mnist-sampel'; "
          "did you mean 'fashion-mnist-sample'?"),
    exact("suggest-model-kind", "train tiny.yaml model.kind=multitsk",
          "command line override model.kind=multitsk: unknown value 'multitsk'; did you mean 'multitask'?"),
    exact("suggest-trunk-type", "train tiny.yaml model.trunk.type=mpl",
          "command line override model.trunk.type=mpl: unknown value 'mpl'; did you mean 'mlp'?"),
    exact("suggest-task", "train tiny.yaml tasks=[itme]",
          "command line override tasks=[itme]: tasks[0]: unknown task 'itme'; did you mean 'item'?"),
    exact("suggest-task-key", "train tiny.yaml loss.weights.itme=2",
          "command line override loss.weights.itme=2: unknown task; did you mean loss.weights.item?"),
    exact("suggest-early-stopping-task", "train tiny.yaml train.early_stopping.metric=val.itme.acc",
          "command line override train.early_stopping.metric=val.itme.acc: unknown task 'itme'; did you mean 'item'?"),
    exact("suggest-study", "run pairs-weighing",
          "pairs-weighing: no such study file and no built-in study of that name; did you mean pairs-weighting?"),
    exact("suggest-budget", "run study.yaml --budget quik",
          "budget 'quik' is not defined for study tiny-study; did you mean 'quick'?"),
    # an option of another method (or model kind, or dataset) names its owner and lists what the chosen one takes
    exact("foreign-loss-option", "train tiny.yaml loss.method=pcgrad loss.c=0.5",
          "command line override loss.c=0.5: not an option of pcgrad (it belongs to cagrad); "
          "pcgrad takes: weights, gradients"),
    exact("foreign-fixed-option", "train tiny.yaml loss.temperature=2",
          "command line override loss.temperature=2: not an option of fixed (it belongs to dwa); fixed takes: weights"),
    exact("foreign-model-option", "train tiny.yaml model.experts=3",
          "command line override model.experts=3: not an option of multitask (it belongs to mmoe and dselect_k); "
          "multitask takes: head, heads, reuse, trunk, sharing"),
    # a command-line override is blamed on the command line, not on the study variant it first broke
    exact("study-override-blamed", "run study.yaml train.epoch=2",
          "command line override train.epoch=2: unknown key; did you mean train.epochs?"),
    exact("study-override-value-blamed", "run study.yaml optim.lr=-1",
          "command line override optim.lr=-1: Input should be greater than 0 (got -1)"),
    # a problem in a YAML file names the file and the line
    exact("run-config-line", "train bad.yaml",
          "bad.yaml:8: train.epoch: unknown key; did you mean train.epochs?", prepare=write("bad.yaml", TYPO_RUN)),
    exact("run-config-foreign-option-line", "train bad.yaml",
          "bad.yaml:7: loss.c: not an option of pcgrad (it belongs to cagrad); pcgrad takes: weights, gradients",
          prepare=write("bad.yaml", FOREIGN_OPTION_RUN)),
    exact("run-config-dataset-line", "train bad.yaml",
          "bad.yaml:2: data.dataset: unknown value 'fashion-mnst'; did you mean 'fashion-mnist'?",
          prepare=write("bad.yaml", TYPO_DATASET_RUN)),
    exact("study-base-line", "run bad-study.yaml",
          "bad-study.yaml:8: variant 'shared': train.epoch: unknown key; did you mean train.epochs?",
          prepare=write("bad-study.yaml", TYPO_STUDY)),
    exact("study-variant-line", "run bad-study.yaml",
          "bad-study.yaml:12: variant 'independent': train.epoch: unknown key; did you mean train.epochs?",
          prepare=write("bad-study.yaml", TYPO_VARIANT_STUDY)),
    exact("study-spec-key-line", "run bad-study.yaml",
          "bad-study.yaml:2: seed: unknown key; did you mean seeds?",
          prepare=write("bad-study.yaml", TYPO_SPEC_KEY_STUDY)),
    exact("search-spec-key-line", "search bad-search.yaml",
          "bad-search.yaml:7: space.depth.hihg: unknown key; did you mean space.depth.high?",
          prepare=write("bad-search.yaml", TYPO_SEARCH)),
    exact("suggest-search", "search mnist-mpl",
          "mnist-mpl: no such search file and no built-in search of that name; did you mean mnist-mlp?"),
]  # fmt: skip


@pytest.mark.parametrize("case", HOW_TO_FIX, ids=[c.id for c in HOW_TO_FIX])
def test_errors_say_how_to_fix_them(case, workspace, monkeypatch, capsys):
    """The exact message: where the problem was written (file and line, or the command line) and the fix."""
    if case.prepare is not None:
        case.prepare(workspace, monkeypatch)
    before = tree(workspace)
    code = main(case.argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.splitlines() == [f"mtlab: error: {line}" for line in case.lines]
    assert tree(workspace) == before


MNIST_GZ = (
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
)


def test_fetch_offline_says_where_to_put_the_files_by_hand(workspace, capsys):
    cache = user_cache_root()
    assert main(["data", "fetch", "mnist", "--data-dir", "store"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "mtlab: error: downloads are off (MTLAB_OFFLINE=1); to get mnist by hand, download "
        f"{MNIST_GZ} from https://ossci-datasets.s3.amazonaws.com/mnist/ and put them in one of the directories "
        f"mtlab looks in: store/mnist (data_dir), store (data_dir), {cache}/mnist (user cache)"
    ]
    assert not (workspace / "store").exists()


def test_fetch_without_network_says_where_to_put_the_files_by_hand(workspace, monkeypatch, capsys):
    from test_data_resolve import bypass_proxies, closed_port_url

    monkeypatch.delenv("MTLAB_OFFLINE")
    bypass_proxies(monkeypatch)
    url = closed_port_url()
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], mirrors=(url,)))
    assert main(["data", "fetch", "mnist", "--data-dir", "store"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    cache = user_cache_root()
    assert lines[0].startswith(f"mtlab: error: could not download train-images-idx3-ubyte.gz ({url}")
    assert lines[0].endswith(
        f"); to get mnist by hand, download {MNIST_GZ} from {url} and put them in one of the directories mtlab "
        f"looks in: store/mnist (data_dir), store (data_dir), {cache}/mnist (user cache)"
    )
    assert "mtlab data fetch" not in err


# ----------------------------------------------------------------------------------------------------- fuzzing

KEYS = st.sampled_from(
    ["data", "model", "train", "optim", "loss", "tasks", "seed", "name", "dataset", "trunk", "type", "widths",
     "conv", "epochs", "lr", "weights", "item", "group", "reuse", "sharing", "0", "1", "early_stopping", "x"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(string.printable, max_size=8),
    st.sampled_from(["mnist", "fashion-mnist-sample", "mlp", "cnn", "shared", "independent", "item->group", "adam"]),
)  # fmt: skip
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)
DOTTED = st.lists(KEYS, min_size=1, max_size=4).map(".".join)
VALUE_TEXT = st.one_of(st.text(string.printable, max_size=12), DOCUMENTS.map(lambda d: yaml.safe_dump(d).strip()))


@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS, overrides=st.lists(st.tuples(DOTTED, VALUE_TEXT), max_size=4))
def test_the_config_loader_returns_a_config_or_raises_mtlabs_error(document, overrides):
    """Random YAML documents and dotted overrides: a valid RunConfig or an MtlabError, never anything else."""
    items = [f"{key}={value}" for key, value in overrides]
    raw = yaml.safe_load(yaml.safe_dump(document))
    if not isinstance(raw, dict):
        raw = {"data": raw}
    message = None
    try:
        config = parse_config(apply_overrides(raw, items))
    except MtlabError as e:
        message = str(e)
    if message is None:
        assert isinstance(config, RunConfig)
    else:  # one non-empty line per problem, each naming a key
        assert message.strip()
        assert all(": " in line for line in message.splitlines())


@settings(derandomize=True, max_examples=100, deadline=None)
@given(content=st.one_of(st.text(max_size=60).map(str.encode), st.binary(max_size=60)))
def test_the_config_file_reader_returns_a_mapping_or_raises_mtlabs_error(content, tmp_path_factory):
    from mtlab.config.load import read_yaml

    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_bytes(content)
    try:
        raw = read_yaml(path)
    except MtlabError:
        pass
    else:
        assert isinstance(raw, dict)
