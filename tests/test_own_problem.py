"""A new user's own problem, end to end from the README: `mtlab data example DIR` writes real images as a table
with four task types (one regression target with empty cells), the same data as an .npz and a network of one's own;
each config trains from the command line, and a study over the table reports the regression task by MAE / RMSE with
their directions, direction-aware Δm, a ranking and a trade-off plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
QUICK = ["train.epochs=1", "train.batch_size=100"]


def mtlab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlab", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def example(built_once) -> Path:
    """The example, written once for the session (tests train from it; only the study test adds a file to it)."""

    def make(root: Path) -> Path:
        out = mtlab(root, "data", "example", "my-problem")
        assert out.returncode == 0, out.stderr
        assert "mtlab train my-problem/table.yaml" in out.stdout
        return root / "my-problem"

    return built_once("test_own_problem-example", make)


@pytest.mark.parametrize("config", ["table.yaml", "arrays.yaml", "custom.yaml"])
def test_each_example_config_trains(example, tmp_path, config):
    out = mtlab(example.parent, "train", f"my-problem/{config}", "--out", str(tmp_path / "run"), *QUICK)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("item.acc", "item.f1", "footwear.auroc", "ink.mae", "ink.rmse", "ink.r2", "look.acc", "look.auroc"):
        assert f"test.{key}" in test
    assert 0 < test["test.ink.mae"] < 100  # percent of inked pixels, in its own units
    assert set(metrics["confusion"]) == {"item"}  # classification with a confusion matrix: multiclass only
    assert metrics["task_types"]["ink"]["metrics"]["mae"] == "min"


def test_a_study_over_the_table_reports_regression_by_direction(example, tmp_path):
    spec = yaml.safe_load((example / "study.yaml").read_text())
    spec["seeds"] = 2
    spec["base"]["train"]["epochs"] = 1
    spec["variants"]["shared"]["grid"]["loss.method"] = ["fixed", "uncertainty"]
    (example / "tiny-study.yaml").write_text(yaml.safe_dump(spec))
    out = mtlab(example.parent, "run", "my-problem/tiny-study.yaml", "--out", str(tmp_path / "s"), "--workers", "1")
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "s" / "report.md").read_text()
    assert "mae ↓" in report
    assert "rmse ↓" in report
    assert "Δm" in report
    assert list((tmp_path / "s" / "figures").glob("trade-off*.png"))
