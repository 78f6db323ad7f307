"""Exported tables: one row per run with labels and final metrics, one row per run and epoch, CSV and Parquet; the
report's main tables as LaTeX (checked structurally, and compiled where pdflatex is installed)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from mtlab.errors import MtlabError
from mtlab.report import export_tables
from mtlab.report.export_formats import EXPORT_FORMATS
from mtlab.report.tables import STORE_NAME
from test_report import (  # noqa: F401  (morpho_study: a fixture)
    CONTROL,
    FAILED_REASON,
    GOLDEN,
    ITEM_ACC,
    PARAMETERS,
    PARTIAL,
    build_study,
    morpho_study,
)


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


# ------------------------------------------------------------------------------------------------------- LaTeX

ESCAPED = re.compile(r"\\[&%$#_{}]")  # \& \% ... print the character; "\\" (a row end) is not among them


def check_latex(tex: str) -> None:
    """What makes LaTeX fail to compile or print garbage, checked without LaTeX: unescaped %, & or _ where they do
    not belong, unbalanced braces or environments, and tabular rows whose cells do not fill the column spec."""
    plain = ESCAPED.sub("", tex)
    assert "%" not in plain, "an unescaped % comments out the rest of a line"
    depth = 0
    for char in plain:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "a { is never closed"
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", plain):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack, f"\\end{{{env}}} without a \\begin"
            assert stack.pop() == env, f"\\end{{{env}}} closes another environment"
    assert not stack, f"unclosed environments {stack}"
    assert "_" not in re.sub(r"\$[^$]*\$", "", plain), "an unescaped _ outside math"
    for spec, body in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", plain, flags=re.S):
        columns = len(re.findall(r"[lrc]", spec))
        assert body.count(r"\toprule") == body.count(r"\midrule") == body.count(r"\bottomrule") == 1  # booktabs
        rows = [r for r in re.split(r"\\\\", body)]
        for row in rows:
            cells = re.sub(r"\\(toprule|midrule|bottomrule)|\\cmidrule\([lr]*\)\{[\d-]+\}", "", row).strip()
            if not cells:
                continue
            spans = [int(m[1]) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in cells.split("&")]
            assert sum(spans) == columns, f"{sum(spans)} cells for {columns} columns: {cells[:80]}"


@pytest.fixture(scope="module")
def latex(tmp_path_factory):
    directory = build_study(tmp_path_factory.mktemp("study"))
    paths = export_tables(directory, "latex")
    return directory, {p.stem: p.read_text() for p in paths}


def test_latex_export_writes_a_tex_per_table_and_a_document(latex):
    directory, tables = latex
    assert list(tables) == ["summary", "comparisons", "ranking", "tables"]
    assert (directory / "export" / "summary.tex").is_file()
    for name in ("summary", "comparisons", "ranking"):
        assert rf"\input{{{name}}}" in tables["tables"]
    assert r"\usepackage{booktabs}" in tables["tables"]


@pytest.mark.parametrize("name", ["summary", "comparisons", "ranking", "tables"])
def test_latex_tables_are_structurally_sound(latex, name):
    check_latex(latex[1][name])


def test_structural_check_catches_what_breaks_latex():
    good = "\\begin{tabular}{lr}\n\\toprule\na & b \\\\\n\\midrule\nc\\_d & 1\\% \\\\\n\\bottomrule\n\\end{tabular}\n"
    check_latex(good)
    for broken in (good.replace("c\\_d", "c_d"), good.replace("1\\%", "1%"), good.replace("a & b", "a & b & c"),
                   good.replace("\\end{tabular}", ""), good.replace("a & b", "{a & b")):
        with pytest.raises(AssertionError):
            check_latex(broken)


def test_latex_summary_has_means_intervals_bold_best_and_holm_marks(latex):
    from mtlab.report.latex import escape

    directory, tables = latex
    summary = tables["summary"]
    golden = next(line for line in summary.splitlines() if line.startswith(f"{GOLDEN} &"))
    assert r"85.00 $\pm$ 1.00" in golden
    assert "[82.52, 87.48]" in golden
    # Bold: the best mean among variants with two or more finished runs (PARTIAL has one run at 87: not ranked).
    partial = next(line for line in summary.splitlines() if line.startswith(f"{escape(PARTIAL)} &"))
    assert r"\textbf" not in partial
    assert r"\textbf{85.00 $\pm$ 1.00}" in golden
    # A mark where, and only where, the report's comparison is significant at the Holm-adjusted level.
    from mtlab.report.tables import comparison_frame, load_study

    comparisons = comparison_frame(load_study(directory))
    wins = comparisons[comparisons["verdict"] == "win"]
    assert len(wins) > 0
    assert summary.count(r"\textsuperscript{*}") == len(wins) + 1  # + the note that explains it
    assert "Holm-adjusted" in summary
    assert f"{CONTROL} (control)" in summary


def test_latex_is_honest_about_direction(morpho_study, tmp_path):  # noqa: F811  (the fixture imported above)
    """A lower-is-better metric: its header points down and the bold goes to the lowest mean."""
    paths = export_tables(morpho_study, "latex", tmp_path)
    summary = paths[0].read_text()
    check_latex(summary)
    assert r"MAE $\downarrow$" in summary
    assert r"accuracy (\%) $\uparrow$" in summary
    alone = next(line for line in summary.splitlines() if line.startswith("thickness alone &"))
    assert r"\textbf{0.4100 $\pm$ 0.0100}" in alone


def test_latex_escapes_special_characters():
    from mtlab.report.latex import escape

    assert escape("nash_mtl & 50% #1 {x} ~ ^ \\ group->item λ=0.3 a→b 2×3") == (
        r"nash\_mtl \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"group-\textgreater{}item $\lambda$=0.3 a$\rightarrow$b 2$\times$3"
    )


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed here; the structural check "
                    "(test_latex_tables_are_structurally_sound) stands in for compiling")
def test_latex_tables_compile_with_pdflatex(latex, tmp_path):
    directory, _ = latex
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                            cwd=directory / "export", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_every_export_format_names_a_writer(fmt):
    """Each row of the format table loads a callable writer (a new format is covered the day it is added)."""
    chosen = EXPORT_FORMATS[fmt]
    if chosen.requires:
        pytest.importorskip(chosen.requires)
    assert callable(chosen.load())
    assert chosen.writes


def test_export_command_offers_every_format():
    from mtlab.cli import export_cmd

    parser = argparse.ArgumentParser()
    export_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["export", "somewhere", "--format", "latex"])
    assert args.fmt == "latex"
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "somewhere", "--format", "xlsx"])
