"""Outside packages extend mtlab through entry points: the demo plug-in package (tests/plugin_package) - a dataset,
a task type, a model kind, a weighting method and an executor - is installed into a fresh site directory (its
``.dist-info`` with the entry points its pyproject declares, exactly what pip writes) and used from the ``mtlab``
command in a new process, as a user who installed it would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

PACKAGE = Path(__file__).parent / "plugin_package"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory on which the demo plug-in is installed (package + dist-info with its entry points)."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(PACKAGE / "mtlab_demo_plugin", site / "mtlab_demo_plugin")
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    info = site / f"mtlab_demo_plugin-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, points in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def mtlab(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "mtlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


CONFIG = {
    "data": {"dataset": "demo-blobs", "examples": 200},
    "model": {"kind": "demo_mlp", "hidden": 8},
    "loss": {"method": "demo_softmax", "temperature": 2.0},
    "optim": {"lr": 0.01},
    "train": {"epochs": 3, "batch_size": 50, "early_stopping": {"metric": "val.hits.mae", "patience": 5}},
}


def test_every_kind_of_plug_in_is_listed(site, tmp_path):
    out = mtlab(site, tmp_path, "weightings")
    assert out.returncode == 0, out.stderr
    assert "demo_softmax" in out.stdout


@pytest.mark.slow
def test_a_run_uses_the_plug_ins_dataset_task_type_model_and_method(site, tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    out = mtlab(site, tmp_path, "train", "run.yaml", "--out", "run")
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test.cluster.acc", "test.cluster.f1", "test.hits.mae", "test.hits.loss"} <= set(metrics["test"])
    assert metrics["task_types"]["hits"]["metrics"] == {"loss": "min", "mae": "min"}
    assert metrics["test"]["test.cluster.acc"] > 0.5  # three well-separated blobs


@pytest.mark.slow
def test_a_study_runs_on_the_plug_ins_executor(site, tmp_path):
    study = {
        "name": "demo",
        "base": {**CONFIG, "train": {"epochs": 1, "batch_size": 50}},
        "variants": {"equal": {"set": {"loss": {"method": "fixed"}}}, "softmax": {}},
        "seeds": 2,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    out = mtlab(site, tmp_path, "run", "study.yaml", "--executor", "demo_serial", "--workers", "1", "--out", "s")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "s" / "results.sqlite").is_file()
    assert "demo_serial" in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.slow
def test_without_the_package_its_names_are_unknown(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    out = subprocess.run(
        [sys.executable, "-m", "mtlab", "train", "run.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2
    assert out.stderr.startswith("mtlab: error: ")
    assert "demo-blobs" in out.stderr
    assert "Traceback" not in out.stderr
