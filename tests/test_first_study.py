"""From a first run to a first study (issue 32): a run config as a study's base, config error lines that can be
followed, honest times and rankings, figures and tables that stay put."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtlab.cli.main import main
from mtlab.config import load_config
from mtlab.errors import ConfigError
from mtlab.report import build_report, export_tables
from mtlab.report.tables import STORE_NAME, load_study, ranking_frame, ranking_table, summary_frame, summary_table
from mtlab.study.definition import definition_change
from mtlab.study.spec import StudySpec, expand, load_study_spec
from mtlab.study.store import ResultStore
from test_report import FakeFit, confusion

RUN = {
    "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
    "model": {"trunk": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
    "train": {"epochs": 1, "batch_size": 50, "threads": 1},
}
STUDY = {"name": "first", "seeds": 1, "variants": {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}}


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------------- 1. a run config as a study's base


def test_a_study_base_may_name_a_run_config_file_with_the_study_on_top(tmp_path):
    write(tmp_path / "configs" / "run.yaml", RUN)
    by_path = load_study_spec(write(tmp_path / "study.yaml", {**STUDY, "base": "configs/run.yaml"}))
    inline = load_study_spec(write(tmp_path / "inline.yaml", {**STUDY, "base": RUN}))
    assert by_path.base == RUN  # the stored definition holds the content, not the path
    runs = expand(by_path)
    assert [r.run_id for r in runs] == [r.run_id for r in expand(inline)]
    assert [r.config.loss.method for r in runs] == ["fixed", "uncertainty"]  # the variants' set applies on top


def test_an_edit_of_the_base_file_is_a_redefinition(tmp_path):
    run = write(tmp_path / "run.yaml", RUN)
    study = write(tmp_path / "study.yaml", {**STUDY, "base": "run.yaml"})
    before = load_study_spec(study)
    stored = {r.run_id: "done" for r in expand(before)}
    info = {"name": "first", "budget": None, "overrides": {}, "spec": before.model_dump(mode="json")}
    write(run, {**RUN, "train": {**RUN["train"], "batch_size": 20}})
    after = load_study_spec(study)
    change = definition_change(info, stored, after, None, {}, expand(after))
    assert change is not None
    assert "base.train.batch_size 20 (stored: 50)" in change


def test_a_bad_base_path_or_a_bad_key_in_it_is_one_line_naming_the_file(tmp_path, capsys):
    study = write(tmp_path / "study.yaml", {**STUDY, "base": "absent.yaml"})
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("mtlab: error:") == 1
    assert "study.yaml:8: base: absent.yaml: no such file" in err
    assert not (tmp_path / "out").exists()
    write(tmp_path / "run.yaml", {**RUN, "train": {"epochs": 1, "batch_sise": 50}})
    message = error_of(load_study_spec, write(tmp_path / "study.yaml", {**STUDY, "base": "run.yaml"}))
    assert message.startswith(f"{tmp_path / 'run.yaml'}:")
    assert "train.batch_sise: unknown key" in message


# ------------------------------------------------------------------------------- 11. unsetting from the command line


def test_an_override_to_null_unsets_a_key_that_takes_no_null():
    example = "examples/fashion-mtl-sample.yaml"
    refused = error_of(load_config, example, ["loss.method=nash_mtl"], "command line override")
    assert "remove them (on the command line: loss.weights=null" in refused
    config = load_config(example, ["loss.method=nash_mtl", "loss.weights=null"], "command line override")
    assert config.loss.weights == {}
    assert load_config(example, ["train.epochs=null"]).train.epochs == type(config.train)().epochs
    assert load_config(example, ["train.early_stopping=null"]).train.early_stopping is None  # null is a value here


# ---------------------------------------------------------------------------------------- 12. where a YAML error starts


def test_a_yaml_error_names_the_line_where_the_unclosed_part_starts(tmp_path):
    bad = write(tmp_path / "bad.yaml", "data: {dataset: mnist\nmodel: {kind: hps}\ntrain: {epochs: 1}\n")
    message = error_of(load_config, bad)
    assert message.startswith(f"{bad}: line 2 invalid YAML")
    assert "flow mapping that starts on line 1" in message


# ------------------------------------------------------------------------------------ 10. an option of another command


def test_an_option_of_another_command_names_the_commands_that_have_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["export", str(tmp_path), "--figure-format", "svg"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mtlab: error: unrecognized arguments: --figure-format svg; --figure-format is an option of")
    assert "`mtlab report`" in err


# ------------------------------------------------------------------------------------------- a study with fake results


FASHION = {"data": {"dataset": "fashion-mnist-sample"}, "model": {"trunk": {"type": "mlp", "widths": [8]}},
           "train": {"epochs": 3}}  # fmt: skip


def fake_study(directory: Path, variants: dict, control, accuracy=None, seeds: int = 3, base=None, scores=None):
    """A study stored as the runner leaves it, of the Fashion-MNIST sample's tasks (item, group) unless ``base``
    says otherwise; ``accuracy(run, task)`` gives each run's test accuracy, or ``scores(run)`` its test values
    ``{task: {metric: value}}``. Each epoch takes 0.5 s, each run 3 epochs, started 10 s before it ends."""
    spec = StudySpec.model_validate({
        "name": "fake", "base": base or FASHION, "variants": variants, "seeds": seeds, "control": control,
    })  # fmt: skip
    scores = scores or (lambda run: {t: {"acc": accuracy(run, t)} for t in run.config.task_names})
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(name=spec.name, description="", budget=None, spec=spec.model_dump(mode="json"),
                       command=["mtlab", "run", "fake.yaml"], environment={})  # fmt: skip
        runs = expand(spec)
        store.sync_runs(runs)
        for run in runs:
            values = scores(run)
            history = [{"epoch": e, "seconds": 0.5, "step_seconds": 0.01, "train.loss": 1.0 / e,
                        **{f"val.{t}.{m}": v for t, ms in values.items() for m, v in ms.items()}}
                       for e in (1, 2, 3)]  # fmt: skip
            test = {"test.loss": 0.5, **{f"test.{t}.{m}": v for t, ms in values.items() for m, v in ms.items()},
                    **{f"test.{t}.loss": 0.1 for t in values}}  # fmt: skip
            matrices = {t: confusion(ms["acc"], 3) for t, ms in values.items() if "acc" in ms}
            fit = FakeFit(history, test, {}, matrices, 3, seconds=4.0)
            store.mark_running(run.run_id, directory / "runs" / run.run_id)
            store.record_done(run.run_id, fit, parameters=100, environment={})
            store.db.execute("UPDATE runs SET started = finished - 10 WHERE run_id = ?", (run.run_id,))
    return directory


# -------------------------------------------------------------------------------- 4. training time and wall time


def test_training_time_and_wall_time_are_told_apart_and_an_old_store_still_opens(tmp_path):
    directory = fake_study(tmp_path, {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}, "ew",
                           lambda run, task: 0.8 + 0.01 * run.seed)  # fmt: skip
    study = load_study(directory)
    summary = summary_frame(study)
    assert summary["train_seconds"].tolist() == pytest.approx([1.5, 1.5])  # 3 epochs of 0.5 s
    assert summary["wall_seconds"].tolist() == pytest.approx([10.0, 10.0])  # start to record
    table = summary_table(study, summary)
    assert table.headers[-2:] == ["Training time", "Wall time"]
    assert "Training time: the epochs" in table.caption
    assert "wall time: from the start of a run to its result" in table.caption
    # A store written before train_seconds: no column; opening it adds it, and the epochs' seconds stand in.
    with ResultStore(directory / STORE_NAME) as store:
        store.db.execute("ALTER TABLE runs DROP COLUMN train_seconds")
    assert summary_frame(load_study(directory))["train_seconds"].tolist() == pytest.approx([1.5, 1.5])
    with ResultStore(directory / STORE_NAME) as store:
        assert store.runs_frame()["train_seconds"].isna().all()


# -------------------------------------------------------------------------------- 5. single-task controls apart


def test_single_task_controls_are_left_out_of_the_ranks_and_the_caption_says_so(tmp_path):
    alone = {"item alone": {"set": {"tasks": ["item"]}}, "group alone": {"set": {"tasks": ["group"]}}}
    variants = {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}, "dwa": {"set": {"loss.method": "dwa"}},
                **alone}  # fmt: skip
    best = {"item alone": 0.95, "group alone": 0.95, "ew": 0.80, "uw": 0.82, "dwa": 0.81}
    directory = fake_study(tmp_path, variants, {"per_task": {"item": "item alone", "group": "group alone"}},
                           lambda run, task: best[run.variant] + 0.001 * run.seed)  # fmt: skip
    study = load_study(directory)
    summary = summary_frame(study)
    from mtlab.report.tables import comparison_frame

    comparisons = comparison_frame(study)
    ranking = ranking_frame(study, summary, comparisons)
    assert ranking["variant"].tolist() == ["uw", "dwa", "ew", "item alone", "group alone"]
    assert ranking["rank"].tolist()[:3] == [1.0, 2.0, 3.0]
    assert ranking["rank"].isna().tolist()[3:] == [True, True]
    table = ranking_table(study, ranking, comparisons)
    assert [row[0].text for row in table.rows] == ["1", "2", "3", "–", "–"]
    assert table.rows[3][2].text == "not ranked"
    assert "Not ranked: the single-task controls item alone, group alone" in table.caption
    tex = export_tables(directory, "latex", tmp_path / "tex")
    assert "Not ranked: the single-task controls" in (tmp_path / "tex" / "ranking.tex").read_text()
    assert len(tex) == 4


# ------------------------------------------------------------------------------------------- 8. the LaTeX export


@pytest.mark.slow
def test_latex_document_loads_lmodern_and_says_why_there_is_no_ranking(tmp_path, capsys):
    directory = fake_study(tmp_path / "study", {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}, "ew",
                           lambda run, task: 0.8 + 0.01 * run.seed)  # fmt: skip
    assert main(["export", str(directory), "--format", "latex", "--out", str(tmp_path / "tex")]) == 0
    assert "note: no ranking.tex" in capsys.readouterr().err
    assert not (tmp_path / "tex" / "ranking.tex").exists()
    document = (tmp_path / "tex" / "tables.tex").read_text()
    assert "\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n" in document
    assert "No ranking: it needs a control and three or more variants with finished runs (this study has a " \
        "control and 2 variants with finished runs)." in document
    md = build_report(directory)["md"].read_text()
    assert "No ranking: it needs a control and three or more variants" in md


# ------------------------------------------------------------------------------------ 6. the figure format stays put


@pytest.mark.slow
def test_the_figure_format_is_remembered_per_study_directory(tmp_path):
    directory = fake_study(tmp_path, {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}, "ew",
                           lambda run, task: 0.8 + 0.01 * run.seed)  # fmt: skip
    figures = build_report(directory, figure_format="svg")["figures"]
    svgs = sorted(p.name for p in figures.glob("*.svg"))
    assert svgs
    assert not list(figures.glob("*.png"))
    build_report(directory)  # as a resumed `mtlab run` without --figure-format does
    assert sorted(p.name for p in figures.glob("*.svg")) == svgs
    assert not list(figures.glob("*.png"))
    build_report(directory, figure_format="png")  # changed only when asked
    assert not list(figures.glob("*.svg"))
    build_report(directory)
    assert list(figures.glob("*.png"))


# ------------------------------------------------------------------------ 7. value labels in their panel, intervals on


MORPHO = {"data": {"dataset": "morpho-mnist-sample"}, "tasks": ["digit", "thickness"],
          "model": {"trunk": {"type": "mlp", "widths": [8]}}, "train": {"epochs": 3}}  # fmt: skip
SPREAD = {"digit": [0.90, 0.99, 0.999], "thickness": [0.01, 0.02, 0.30]}  # intervals past 100 % and below 0


def spread_study(directory: Path) -> Path:
    def scores(run):
        shift = 0.0 if run.variant == "fixed" else 0.002
        return {"digit": {"acc": SPREAD["digit"][run.seed] - shift},
                "thickness": {"mae": SPREAD["thickness"][run.seed] + shift}}  # fmt: skip

    variants = {"fixed": {"set": {"loss.method": "fixed"}}, "uncertainty": {"set": {"loss.method": "uncertainty"}}}
    return fake_study(directory, variants, "fixed", base=MORPHO, scores=scores)


def test_accuracy_dots_keep_value_labels_in_their_panel_and_span_the_intervals(tmp_path):
    from mtlab.report.figures import accuracy_dots, variant_colors

    study = load_study(spread_study(tmp_path))
    summary = summary_frame(study)
    fig = accuracy_dots(study, summary, variant_colors(study.variants))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax, (task, factor) in zip(panels, [("digit", 100.0), ("thickness", 1.0)], strict=True):
        metric = study.primary(task)
        box = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) == 2
        for text in labels:  # inside the panel, clear of the next panel's axis
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0
            assert extent.x1 <= box.x1
        lo, hi = ax.get_xlim()
        assert lo <= factor * summary[f"{task}.{metric}.ci_low"].min()
        assert hi >= factor * summary[f"{task}.{metric}.ci_high"].max()
    assert summary["thickness.mae.ci_low"].min() < 0  # the case: an MAE interval reaching below 0
    assert summary["digit.acc.ci_high"].max() > 1  # and an accuracy interval past 100 %


# ------------------------------------------------------------------------------ 3. the classes a table's column holds


def shapes_table(directory: Path) -> Path:
    """A feature table whose ``shape`` column has a typo (``squre``) and declares no ``classes:``."""
    shapes = ["circle", "square", "triangle"]
    lines = ["x1,x2,shape,area"] + [f"{i % 7},{i % 5},{shapes[i % 3]},{i % 4}" for i in range(59)]
    lines.append("3,1,squre,2")
    (directory / "shapes.csv").write_text("\n".join(lines) + "\n")
    return write(directory / "run.yaml", {
        "name": "shapes",
        "data": {"dataset": "table", "path": "shapes.csv", "feature_columns": ["x1", "x2"],
                 "tasks": {"shape": {"type": "multiclass", "column": "shape"},
                           "area": {"type": "regression", "column": "area"}}},
        "model": {"trunk": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
        "train": {"epochs": 1, "batch_size": 20, "threads": 1},
    })  # fmt: skip


FOUND = "task shape: 4 classes found in column 'shape': circle, square, squre, triangle (declare data.tasks.shape"


@pytest.mark.slow
def test_classes_found_in_a_column_are_said_by_train_and_in_the_report_header(tmp_path, capsys):
    run = shapes_table(tmp_path)
    assert main(["train", str(run), "--out", str(tmp_path / "run")]) == 0
    assert f"note: {FOUND}" in " ".join(capsys.readouterr().out.split())  # (the console may wrap the line)
    study = write(tmp_path / "study.yaml", {"name": "shapes-study", "seeds": 1, "base": "run.yaml"})
    assert main(["run", str(study), "--out", str(tmp_path / "study")]) == 0
    md = (tmp_path / "study" / "report.md").read_text()
    assert f"Data: {FOUND}" in md


# ----------------------------------------------------------------------------- 9. where a tracker writes, what it got


@pytest.mark.slow
def test_train_tracks_into_its_run_directory_and_says_where(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write(tmp_path / "one.yaml", {**RUN, "train": {**RUN["train"], "epochs": 2}})
    out = tmp_path / "runs" / "one"
    assert main(["train", str(config), "--out", str(out), "--track", "mlflow"]) == 0
    assert (out / "mlflow.db").is_file()
    assert not (tmp_path / "runs" / "mlflow.db").exists()
    assert not (tmp_path / "runs" / "mlartifacts").exists()
    assert f"mlflow: sqlite:///{out.resolve() / 'mlflow.db'}" in capsys.readouterr().out


def test_export_to_a_tracker_says_what_it_sent_or_that_nothing_was_new(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    directory = fake_study(tmp_path, {"ew": {}, "uw": {"set": {"loss.method": "uncertainty"}}}, "ew",
                           lambda run, task: 0.8 + 0.01 * run.seed, seeds=2)  # fmt: skip
    assert main(["export", str(directory), "--format", "tensorboard"]) == 0
    assert f"tensorboard: sent 4 runs (12 epochs) to {directory.resolve() / 'tensorboard'}" in capsys.readouterr().out
    assert main(["export", str(directory), "--format", "tensorboard"]) == 0
    assert "tensorboard: nothing new for" in capsys.readouterr().out


# ------------------------------------------------------------------------------ 2. the configs the documentation shows

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def yaml_blocks() -> list[tuple[str, str]]:
    """``(where, text)`` of every YAML block of the documentation that is whole: the fence's info string ``yaml``,
    without ``fragment`` (which marks a part of a config)."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in re.finditer(r"^```(yaml|yml)([^\n]*)\n(.*?)^```$", text, flags=re.M | re.S):
            if "fragment" not in match[2]:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{document.name}:{line}", match[3]))
    return found


def test_the_documentation_marks_its_fragments_and_has_a_whole_run_config():
    configs = [yaml.safe_load(text) for _, text in yaml_blocks()]
    assert any({"data", "model"} <= set(raw) for raw in configs)  # a whole run config, not only a study's base


@pytest.mark.slow
@pytest.mark.parametrize(("where", "text"), yaml_blocks(), ids=[where for where, _ in yaml_blocks()])
def test_every_whole_config_of_the_documentation_trains_as_written(where, text, tmp_path, monkeypatch, capsys):
    """A run config trains (one epoch); a study expands into valid run configs. A block whose first line is a
    comment naming a ``.yaml`` file is saved there, beside ``mtlab data example my-problem``'s files."""
    monkeypatch.chdir(tmp_path)
    assert main(["data", "example", "my-problem"]) == 0
    named = re.match(r"#\s*(\S+\.ya?ml)\b", text)
    path = write(tmp_path / (named[1] if named else "block.yaml"), text)
    raw = yaml.safe_load(text)
    if "base" in raw:
        assert expand(load_study_spec(path)), where
        return
    argv = ["train", str(path), "--out", str(tmp_path / "run"), "train.epochs=1", "train.threads=1"]
    code = main(argv)
    assert code == 0, f"{where}: {capsys.readouterr().err}"
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_missing_key_comes_with_an_example_value():
    from mtlab.config import parse_config

    message = error_of(parse_config, {"data": {"dataset": "mnist"}, "model": {"trunk": {"type": "cnn"}}})
    assert message == "model.trunk.conv: required key is missing; for example conv: [{filters: 16, kernel: 3, " \
        "pool: 2}, {filters: 32, kernel: 3, pool: 2}]"  # fmt: skip
    lines = error_of(parse_config, {"data": {"dataset": "table"}, "model": {"trunk": {"type": "mlp"}}}).splitlines()
    assert lines == ["data.path: required key is missing; for example path: labels.csv",
                     "data.tasks: required key is missing; for example tasks: {shape: {type: multiclass, column: "
                     "shape}}"]  # fmt: skip
