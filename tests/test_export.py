"""Exported tables: one row per run with labels and final metrics, one row per run and epoch, CSV and Parquet."""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import pytest

from mtlab.errors import MtlabError
from mtlab.report import export_tables
from mtlab.report.tables import STORE_NAME
from test_report import CONTROL, FAILED_REASON, GOLDEN, ITEM_ACC, PARAMETERS, PARTIAL, build_study


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = build_study(tmp_path_factory.mktemp("study"))
    paths = export_tables(directory, "csv")
    return directory, {p.stem: pd.read_csv(p) for p in paths}, paths


def test_csv_files_land_in_the_study_export_directory(exported):
    directory, _, paths = exported
    assert paths == [directory / "export" / "runs.csv", directory / "export" / "epochs.csv"]


def test_runs_table_has_one_row_per_run_with_labels_status_and_metrics(exported):
    _, tables, _ = exported
    runs = tables["runs"]
    assert len(runs) == 12
    assert list(runs.columns[:5]) == ["run_id", "variant", "label.model.sharing", "label.model.reuse", "seed"]
    assert {"test.item.acc", "test.group.acc", "test.loss", "val.item.loss", "parameters", "device"} <= set(runs)
    golden = runs[runs["variant"] == GOLDEN].sort_values("seed")
    assert golden["test.item.acc"].tolist() == pytest.approx(ITEM_ACC[GOLDEN])
    assert set(golden["label.model.sharing"]) == {"shared"}
    assert set(golden["label.model.reuse"]) == {"none"}
    assert golden["parameters"].tolist() == [PARAMETERS[GOLDEN]] * 3
    assert runs["status"].value_counts().to_dict() == {"done": 10, "failed": 1, "pending": 1}


def test_unfinished_runs_keep_their_row_without_metrics(exported):
    _, tables, _ = exported
    partial = tables["runs"][tables["runs"]["variant"] == PARTIAL].set_index("seed")
    assert partial.loc[1, "status"] == "failed"
    assert partial.loc[1, "reason"] == FAILED_REASON
    assert partial.loc[2, "status"] == "pending"
    assert partial.loc[[1, 2], "test.item.acc"].isna().all()
    assert partial.loc[0, "test.item.acc"] == pytest.approx(0.87)


def test_integer_columns_stay_integers_in_csv(exported):
    directory, _, _ = exported
    text = (directory / "export" / "runs.csv").read_text()
    assert f",{PARAMETERS[GOLDEN]}," in text
    assert f"{PARAMETERS[GOLDEN]}.0" not in text


def test_epochs_table_is_wide_per_run_and_epoch(exported):
    _, tables, _ = exported
    epochs = tables["epochs"]
    assert list(epochs.columns[:4]) == ["run_id", "variant", "seed", "epoch"]
    assert {"train.item.acc", "val.item.acc", "train.loss", "lr", "seconds"} <= set(epochs)
    assert len(epochs) == 9 * 3 + 2  # ten finished runs of three epochs, one stopped after two
    control_seed2 = epochs[(epochs["variant"] == CONTROL) & (epochs["seed"] == 2)]
    assert control_seed2["epoch"].tolist() == [1, 2]
    golden_seed0 = epochs[(epochs["variant"] == GOLDEN) & (epochs["seed"] == 0)].set_index("epoch")
    assert golden_seed0.loc[3, "train.item.acc"] == pytest.approx(ITEM_ACC[GOLDEN][0] + 0.03)


def test_parquet_without_pyarrow_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    with pytest.raises(MtlabError, match=r"parquet export needs pyarrow: pip install pyarrow"):
        export_tables(build_study(tmp_path), "parquet")
    assert not (tmp_path / "export").exists()


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    paths = export_tables(build_study(tmp_path), "parquet", tmp_path / "out")
    assert [p.name for p in paths] == ["runs.parquet", "epochs.parquet"]
    runs = pd.read_parquet(paths[0])
    assert len(runs) == 12
    assert runs.loc[runs["variant"] == GOLDEN, "test.item.acc"].tolist() == pytest.approx(ITEM_ACC[GOLDEN])


def test_bad_format_and_missing_store_are_user_errors(tmp_path):
    with pytest.raises(MtlabError, match="unknown export format 'xlsx'"):
        export_tables(tmp_path, "xlsx")
    with pytest.raises(MtlabError, match=str(tmp_path)):
        export_tables(tmp_path, "csv")
    assert not (tmp_path / STORE_NAME).exists()


def test_export_of_a_study_with_nothing_finished(tmp_path):
    runs, epochs = (pd.read_csv(p) for p in export_tables(build_study(tmp_path, finish=False), "csv"))
    assert len(runs) == 12
    assert set(runs["status"]) == {"pending"}
    assert epochs.empty
    assert list(epochs.columns) == ["run_id", "variant", "seed", "epoch"]


def test_export_command_writes_to_out(tmp_path, capsys):
    from mtlab.cli import export_cmd

    parser = argparse.ArgumentParser()
    export_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["export", str(build_study(tmp_path / "study")), "--out", str(tmp_path / "tables")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "tables" / "runs.csv"),
        str(tmp_path / "tables" / "epochs.csv"),
    ]
