"""``mtlab train`` end to end on the embedded sample: exit codes, one-line errors, and the run directory's files."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mtlab.cli.main import main
from mtlab.config import parse_config
from mtlab.data.tasks import Task
from mtlab.models import build_model
from mtlab.train.rundir import load_checkpoint

CONFIG = {
    "name": "cli-tiny",
    "data": {"dataset": "fashion-mnist-sample", "train_subset": 400, "test_subset": 200},
    "model": {"trunk": {"type": "cnn", "conv": [{"filters": 4, "pool": 2}], "dense": [16]}, "head": {"widths": [8]}},
    "loss": {"weights": {"item": 0.7, "group": 0.3}},
    "train": {"epochs": 3, "batch_size": 50, "early_stopping": {"metric": "val.item.acc", "patience": 5}},
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_train_writes_a_reproducible_run_directory(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(config_file), "--seed", "3", "--out", str(out), "optim.lr=0.002"]) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed
    assert str(out) in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.yaml",
        "history.csv",
        "history.jsonl",
        "meta.json",
        "metrics.json",
    ]

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["seed"] == 3
    assert resolved["optim"]["lr"] == 0.002
    assert resolved["train"]["device"] == "auto"  # defaults are written out

    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "done"
    assert meta["argv"][0] == "mtlab"
    assert meta["data_origin"] == "embedded"
    assert meta["environment"]["versions"]["torch"] == torch.__version__

    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,lr,")

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"] == {"train": 360, "val": 40, "test": 200}
    assert set(metrics["test"]) == {
        "test.loss",
        *(f"test.{task}.{metric}" for task in ("item", "group") for metric in ("loss", "acc", "f1")),
    }
    assert metrics["task_types"]["item"]["primary"] == "acc"
    assert len(metrics["confusion"]["group"]) == 3

    # The checkpoint loads safely and reproduces the recorded test accuracy.
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    config = parse_config(resolved)
    tasks = {t: Task(t, tuple(names)) for t, names in checkpoint["tasks"].items()}
    model = build_model(config, tasks, tuple(checkpoint["input_shape"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    from mtlab.data.catalog import load_dataset
    from mtlab.data.split import carve_splits

    splits = carve_splits(load_dataset(config.data), val_fraction=0.1, seed=3, train_subset=400, test_subset=200)
    norm = checkpoint["normalizer"]
    with torch.no_grad():
        logits = model(splits.test.images.float() * norm["scale"] + norm["shift"])
    accuracy = (logits["item"].argmax(1) == splits.test.labels["item"]).float().mean().item()
    assert accuracy == pytest.approx(metrics["test"]["test.item.acc"])


def test_same_seed_same_metrics(config_file, tmp_path):
    for name in ("a", "b"):
        assert main(["train", str(config_file), "--seed", "1", "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert a["test"] == b["test"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lr=-1"], "command line override optim.lr=-1: Input should be greater than 0"),
        (["model.reuse=colour->item"], "model.reuse[0].source: unknown task 'colour'"),
        (
            [
                "data.dataset=mnist",
                "data.data_dir=/nonexistent",
                "data.download=false",
                "loss.weights={}",
                "train.early_stopping=null",
            ],
            "/nonexistent",
        ),
        (["optim"], "must look like dotted.key=value"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(config_file, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    assert main(["train", str(config_file), "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtlab: error: ")
    assert message in err
    assert "\n" not in err
    assert "Traceback" not in err


def test_existing_run_directory_is_not_overwritten(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["train", str(config_file), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_diverging_run_is_recorded_as_failed(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(config_file), "--out", str(out), "optim={name: sgd, lr: 1.0e+12}", "train.epochs=1"])
    assert code == 2
    assert "diverged at epoch 1" in capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["status"] == "failed"


def test_progress_and_summary_show_each_tasks_primary_metric():
    """Accuracy in percent as before; a regression task's MAE as a number in its units, named."""
    from types import SimpleNamespace

    from rich.console import Console

    from mtlab.cli.progress import RichFitProgress, metric_text, primary_metrics
    from mtlab.cli.train_cmd import _print_summary

    config = parse_config({"data": {"dataset": "morpho-mnist-sample"}, "tasks": ["digit", "thickness"],
                           "model": {"trunk": {"type": "mlp", "widths": [8]}}})  # fmt: skip
    assert primary_metrics(config) == {"digit": "acc", "thickness": "mae"}
    assert metric_text("digit", "acc", 0.8512) == "digit 85.12%"
    assert metric_text("thickness", "mae", 0.41234) == "thickness mae 0.4123"
    assert metric_text("tags", "f1", 0.7) == "tags f1 70.00%"

    console = Console(record=True, width=200)
    with RichFitProgress(primary_metrics(config), console=console, batches=False) as progress:
        progress.on_fit_start(epochs=1, batches_per_epoch=1)
        progress.on_epoch_end({"epoch": 1, "val.loss": 0.5, "val.digit.acc": 0.9, "val.thickness.mae": 0.41234})
        shown = progress.progress.tasks[0].fields["metrics"]
    assert shown == "val loss 0.500  digit 90.00%  thickness mae 0.4123"

    result = SimpleNamespace(
        best_epoch=1,
        history=[{}],
        seconds=1.0,
        val={"val.digit.acc": 0.9, "val.thickness.mae": 0.5},
        test={"test.digit.acc": 0.88, "test.digit.loss": 0.3, "test.thickness.mae": 0.41234,
              "test.thickness.loss": 0.2},
    )  # fmt: skip
    model = SimpleNamespace(parameter_counts=lambda: {"shared": 10, "task:digit": 5, "task:thickness": 3})
    outcome = SimpleNamespace(result=result, model=model, parameters=18, run_dir=SimpleNamespace(path="run"))
    _print_summary(console, outcome, primary_metrics(config))
    text = console.export_text()
    assert "metric" in text  # two primary metrics: a column names each row's
    assert "88.00%" in text
    assert "0.4123" in text
    assert "41.23" not in text  # never a percentage of an MAE
