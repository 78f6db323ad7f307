"""Write docs/screenshots/mlflow.png: the MLflow UI showing a tiny study tracked live by ``mtlab run --track mlflow``.

Trains a tiny study (Fashion-MNIST sample, 2 x 2 variants, 2 seeds, 3 epochs) into a temporary directory, serves
``mlflow ui`` on loopback over the study's ``mlflow.db``, and captures the experiment's runs page with headless
Chromium. Needs ``pip install 'mtlab[mlflow]'`` and ``/usr/bin/chromium``. Run from the repository root::

    python docs/screenshots/mlflow_ui.py [STUDY_DIR]

(``STUDY_DIR``: a study this script trained before, to capture again without training.) Not named ``mlflow.py``:
run as a script, that name would shadow the ``mlflow`` package.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent / "mlflow.png"
STUDY = {
    "name": "tiny-tracked",
    "description": "a tiny study for the MLflow screenshot",
    "seeds": 2,
    "control": {"match": {"model.sharing": "independent"}},
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 600, "test_subset": 300},
        "model": {"trunk": {"type": "mlp", "widths": [32]}, "head": {"widths": [16]}},
        "train": {"epochs": 3, "batch_size": 64},
    },
    "grid": {"model.sharing": ["shared", "independent"], "model.trunk.widths": [[16], [32]]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mtlab-mlflow-shot-"))
    if len(sys.argv) > 1:
        study = Path(sys.argv[1]).resolve()
    else:
        spec = work / "tiny-tracked.yaml"
        spec.write_text(yaml.safe_dump(STUDY, sort_keys=False))
        study = work / "study"
        subprocess.run([sys.executable, "-m", "mtlab", "run", str(spec), "--out", str(study), "--workers", "1",
                        "--track", "mlflow"], check=True)  # fmt: skip

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{study / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        from mlflow import MlflowClient

        experiment = MlflowClient(f"sqlite:///{study / 'mlflow.db'}").get_experiment_by_name("tiny-tracked")
        url = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
        command = ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={work / 'profile'}", "--window-size=1600,900", "--virtual-time-budget=20000",
                   "--hide-scrollbars", f"--screenshot={OUT}", url]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HOME": str(work)}, timeout=180)
    finally:
        os.killpg(server.pid, 15)  # the server and the workers it started (its own session)
        server.wait(timeout=30)
    print(f"{OUT} ({study})")


if __name__ == "__main__":
    main()
