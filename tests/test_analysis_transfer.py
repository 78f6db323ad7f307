"""Linear probes of frozen trunks (``mtlab analyze transfer``) on tiny trained runs of the embedded sample."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch

from mtlab.analysis import transfer
from mtlab.analysis.loaded import load_trained_run
from mtlab.cli.analyze import transfer as transfer_cli
from mtlab.config import parse_config
from mtlab.errors import MtlabError
from mtlab.train.run import train_run

SAMPLE = {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 100}
TRUNK = {"type": "cnn", "conv": [{"filters": 4, "kernel": 3, "pool": 2}], "dense": [12]}
TINY = {"epochs": 1, "batch_size": 50, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tensors are tiny: one CPU thread is faster than several, and immune to a busy machine's contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(built_once):
    """Three tiny runs, trained once for the session: a shared two-task trunk, a single-task (item) trunk, and
    independent trunks without a validation split."""
    return built_once("test_analysis_transfer-runs", _make_runs)


def _make_runs(root: Path) -> dict[str, Path]:
    configs = {
        "shared": {"data": SAMPLE, "model": {"trunk": TRUNK}},
        "item-only": {"data": SAMPLE, "tasks": ["item"], "model": {"trunk": TRUNK}},
        "independent": {"data": {**SAMPLE, "val_fraction": 0.0}, "model": {"trunk": TRUNK, "sharing": "independent"}},
    }
    for name, config in configs.items():
        train_run(parse_config({"name": name, **config, "train": TINY}), root / name)
    return {name: root / name for name in configs}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlab analyze")
    transfer_cli.add_cli(parser.add_subparsers(required=True))
    return parser


def _analyze(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_a_probe_gives_accuracies_in_0_1_and_is_deterministic(runs):
    run = load_trained_run(runs["item-only"])
    settings = transfer.ProbeSettings(l2_grid=(1e-3, 1e-1), max_iter=30)
    (result,) = transfer.probe_run(run, "group", settings=settings)
    assert result.trunk == "shared"
    assert not result.trained_on_task  # group was never trained: a true transfer
    assert all(0 <= acc <= 1 for acc in (result.train_acc, result.val_acc, result.test_acc, result.chance))
    assert (result.train_examples, result.val_examples, result.test_examples) == (270, 30, 100)
    assert result.features == 12
    assert result.l2 in (1e-3, 1e-1)
    assert result.val_acc == max(result.val_by_l2.values())  # selected on validation
    (again,) = transfer.probe_run(load_trained_run(runs["item-only"]), "group", settings=settings)
    assert again == result


def test_every_trunk_gets_a_row_and_a_missing_validation_split_is_borrowed(runs):
    run = load_trained_run(runs["independent"])
    results = transfer.probe_run(run, "item", settings=transfer.ProbeSettings(l2_grid=(1e-2,), max_iter=20))
    assert [r.trunk for r in results] == ["item", "group"]
    assert all(r.val_borrowed for r in results)
    assert [(r.train_examples, r.val_examples) for r in results] == [(270, 30)] * 2
    only = transfer.probe_run(run, "item", trunks=["group"], settings=transfer.ProbeSettings((1e-2,), 20))
    assert [r.trunk for r in only] == ["group"]


def test_a_fraction_of_the_training_split_is_a_stratified_subset(runs):
    run = load_trained_run(runs["shared"])
    (result,) = transfer.probe_run(run, "item", fraction=0.5, settings=transfer.ProbeSettings((1e-2,), 20))
    assert result.train_examples == 135
    assert result.val_examples == 30  # model selection still uses the whole validation split


def test_the_probe_fits_separable_features_and_selects_on_validation():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    h = torch.randn(90, 5, generator=generator) * 0.1
    h[torch.arange(90), y] += 3.0  # class c lights up feature c
    probe = transfer.fit_probe(h, y, 3, l2=1e-3)
    assert probe.accuracy(h, y) == 1.0
    probe, l2, by_l2 = transfer.select_probe((h, y), (h, y), 3, transfer.ProbeSettings((1e-3, 1e2), 50))
    assert set(by_l2) == {"0.001", "100"}
    assert by_l2[f"{l2:g}"] == max(by_l2.values())


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--task", "colour"], "unknown task 'colour'|--task colour: unknown task"),
        (["--task", "item", "--fraction", "0"], r"--fraction 0.0: must be in \(0, 1\]"),
        (["--task", "item", "--trunk", "nope"], "--trunk nope"),
    ],
)
def test_user_errors_are_one_line(runs, tmp_path, argv, match):
    with pytest.raises(MtlabError, match=match) as e:
        _analyze(["transfer", "--run", str(runs["shared"]), "--out", str(tmp_path), *argv])
    assert "\n" not in str(e.value)


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(MtlabError, match=r"no checkpoint\.pt") as e:
        _analyze(["transfer", "--run", str(tmp_path), "--task", "item"])
    assert "\n" not in str(e.value)


def test_transfer_end_to_end_writes_one_row_per_run_and_trunk(runs, capsys):
    argv = ["transfer", "--task", "group", "--run", str(runs["shared"]), "--run", str(runs["item-only"])]
    assert _analyze(argv) == 0
    out = runs["shared"] / "analysis" / "transfer"  # default: the first run's analysis directory
    assert {p.name for p in out.iterdir()} == {
        "transfer.csv",
        "transfer.json",
        "transfer.png",
        "report.html",
        "report.md",
    }
    with (out / "transfer.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["trunk"], r["trained_on_task"]) for r in rows] == [
        (str(runs["shared"]), "shared", "True"),
        (str(runs["item-only"]), "shared", "False"),
    ]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    saved = json.loads((out / "transfer.json").read_text())
    assert saved["task"] == "group"
    assert len(saved["results"]) == 2
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1
    assert "Alain &amp; Bengio" in html
    printed = capsys.readouterr().out
    assert printed.count("test accuracy") == 2
