"""The study report: golden statistics in the Markdown, a self-contained HTML file, real PNG figures, partial
studies, and the HTML as a real browser renders it (headless Chromium)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mtlab.errors import MtlabError
from mtlab.report import build_report
from mtlab.report.tables import (
    STORE_NAME,
    best_variant,
    comparison_frame,
    load_study,
    ranking_frame,
    ranking_table,
    representative_run,
    summary_frame,
    summary_table,
)
from mtlab.study.spec import StudySpec, expand
from mtlab.study.store import ResultStore

CONTROL = "independent, none"
GOLDEN = "shared, none"
PARTIAL = "shared, group->item"

# Test accuracy of task item per variant and seed (seed 0, 1, 2); None = failed (seed 1) or pending (seed 2).
ITEM_ACC = {
    CONTROL: [0.80, 0.83, 0.81],
    GOLDEN: [0.84, 0.86, 0.85],
    "independent, group->item": [0.82, 0.82, 0.83],
    PARTIAL: [0.87, None, None],
}
FAILED_REASON = "TrainingDiverged: training diverged at epoch 2: train.loss not finite"
PARAMETERS = {CONTROL: 12_730, GOLDEN: 6_512, "independent, group->item": 12_796, PARTIAL: 6_545}


def study_spec(control: str | None = CONTROL) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "toy-hierarchy",
            "description": "Trunk sharing x label reuse on the Fashion-MNIST sample (fake numbers for tests).",
            "base": {
                "data": {"dataset": "fashion-mnist-sample"},
                "model": {"trunk": {"type": "mlp", "widths": [8]}},
                "train": {"epochs": 3},
            },
            "grid": {
                "model.sharing": ["independent", "shared"],
                "model.reuse": {"none": "none", "group->item": "group->item"},
            },
            "seeds": 3,
            "control": control,
        }
    )


@dataclass
class FakeFit:
    """The fields of :class:`mtlab.train.fit.FitResult` that the store records."""

    history: list[dict[str, float]]
    test: dict[str, float]
    val: dict[str, float]
    confusion: dict[str, list[list[int]]]
    best_epoch: int
    seconds: float
    extra: dict = field(default_factory=dict)


def fake_fit(item_acc: float, seed: int, epochs: int = 3) -> FakeFit:
    group_acc = min(0.99, item_acc + 0.1)
    history = []
    for epoch in range(1, epochs + 1):
        gap = 0.04 * (epochs - epoch)  # accuracy climbs to its final value
        history.append(
            {
                "epoch": epoch,
                "lr": 1e-3,
                "seconds": 1.5,
                "train.loss": 1.2 - 0.1 * epoch,
                "val.loss": 1.3 - 0.1 * epoch,
                "train.item.loss": 0.9 - 0.1 * epoch,
                "train.item.acc": item_acc + 0.03 - gap,
                "train.group.loss": 0.4 - 0.05 * epoch,
                "train.group.acc": group_acc + 0.005 - gap,
                "val.item.loss": 1.0 - 0.1 * epoch,
                "val.item.acc": item_acc - gap + 0.002 * seed,
                "val.group.loss": 0.5 - 0.05 * epoch,
                "val.group.acc": group_acc - gap,
            }
        )
    test = {
        "test.loss": 0.9 - item_acc / 2,
        "test.item.loss": 1.0 - item_acc,
        "test.item.acc": item_acc,
        "test.group.loss": 1.0 - group_acc,
        "test.group.acc": group_acc,
    }
    val = {k: v for k, v in history[-1].items() if k.startswith("val.")}
    return FakeFit(
        history,
        test,
        val,
        {"item": confusion(item_acc, 10), "group": confusion(group_acc, 3)},
        best_epoch=epochs,
        seconds=4.5 + seed,
    )


def confusion(acc: float, k: int, per_class: int = 100) -> list[list[int]]:
    """Each true class: ``acc`` right, the rest predicted as the next class."""
    right = round(acc * per_class)
    matrix = np.zeros((k, k), dtype=int)
    for i in range(k):
        matrix[i, i], matrix[i, (i + 1) % k] = right, per_class - right
    return matrix.tolist()


def build_study(directory: Path, control: str | None = CONTROL, finish: bool = True) -> Path:
    """A study store as the runner leaves it: 4 variants x 3 seeds, one failed run, one pending, the rest done."""
    spec = study_spec(control)
    runs = expand(spec)
    environment = {
        "versions": {"python": "3.11.2", "torch": "2.13.0", "numpy": "2.3.0"},
        "platform": "Linux-x86_64",
        "device": "cpu",
        "git_sha": "0123abcd",
    }
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(
            name=spec.name,
            description=spec.description,
            budget="quick",
            spec=spec.model_dump(mode="json"),
            command=["mtlab", "study", "toy-hierarchy.yaml", "--budget", "quick"],
            environment=environment,
        )
        store.sync_runs(runs)
        if not finish:
            return directory
        for run in runs:
            acc = ITEM_ACC[run.variant][run.seed]
            if run.variant == PARTIAL and run.seed == 1:
                store.mark_running(run.run_id, Path("runs") / run.run_id)
                store.record_failed(run.run_id, FAILED_REASON)
            elif acc is not None:
                epochs = 2 if (run.variant, run.seed) == (CONTROL, 2) else 3  # one run stopped early
                store.record_done(
                    run.run_id,
                    fake_fit(acc, run.seed, epochs),
                    parameters=PARAMETERS[run.variant],
                    environment={**environment, "device": "cpu"},
                )
    return directory


@pytest.fixture(scope="module")
def report(built_once) -> dict[str, Path]:
    return built_once("test_report-report", lambda directory: build_report(build_study(directory)))


def failed_run_id(directory: Path) -> str:
    with ResultStore(directory / STORE_NAME) as store:
        return next(r for r, s in store.statuses().items() if s == "failed")


# ------------------------------------------------------------------------------------------------------ content


def test_build_report_writes_markdown_html_and_figures(report):
    assert set(report) == {"md", "html", "figures"}
    assert report["md"].name == "report.md"
    assert report["md"].stat().st_size > 1000
    assert report["html"].name == "report.html"
    assert report["html"].stat().st_size > 1000
    assert report["figures"] == report["md"].parent / "figures"


def test_markdown_summary_has_golden_statistics(report):
    md = report["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {GOLDEN} |"))
    # item accuracies 84, 86, 85 %: mean 85, sample std 1, 95% t interval 85 ± 4.3027 * 1 / sqrt(3) = 85 ± 2.484.
    assert "85.00 ± 1.00 [82.52, 87.48]" in row
    assert "| 3 |" in row
    assert f"| {CONTROL} (control) |" in md
    # Δm of the golden variant: mean over item and group of the relative change of mean accuracy vs the control.
    control_item, golden_item = np.mean(ITEM_ACC[CONTROL]), np.mean(ITEM_ACC[GOLDEN])
    expected_dm = 100 * np.mean(
        [
            (golden_item - control_item) / control_item,
            ((golden_item + 0.1) - (control_item + 0.1)) / (control_item + 0.1),
        ]
    )
    assert f"{expected_dm:+.2f}" in row
    assert "6,512" in row


def test_markdown_comparison_has_paired_p_values(report):
    md = report["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {GOLDEN} | item | {CONTROL} |"))
    # Differences 4, 3, 4 pp: mean 3.667, t = 11 with 2 df, two-sided p = 1 - 11 / sqrt(11^2 + 2) = 0.0082;
    # Wilcoxon on 3 positive differences: exact p = 2 / 2^3 = 0.25.
    assert "+3.67" in row
    assert "| 0.008 |" in row
    assert "| 0.250 |" in row


def test_partial_variant_shows_missing_interval_and_failed_run(report):
    md = report["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {PARTIAL} |"))
    assert "87.00 ± – [–]" in row
    assert "| 1 of 3 |" in row
    failed = md.split("## Failed runs", 1)[1]
    assert failed_run_id(report["md"].parent) in failed
    assert FAILED_REASON in failed
    header = md.split("## Summary", 1)[0]
    assert "- **Done:** 10" in header
    assert "- **Failed:** 1" in header
    assert "- **Pending:** 1" in header


def test_markdown_references_figures_and_reproduction(report):
    md = report["md"].read_text()
    for png in re.findall(r"\]\((figures/[^)]+\.png)\)", md):
        assert (report["md"].parent / png).is_file()
    assert "figures/test-accuracy.png" in md
    assert "figures/confusion.png" in md
    assert "mtlab study toy-hierarchy.yaml --budget quick" in md
    assert "0123abcd" in md
    assert "2.13.0" in md
    assert "model.sharing:" in md  # the spec as YAML


def test_html_is_self_contained(report):
    html = report["html"].read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert not re.search(r"""src=["'](?!data:)""", html)  # every image is embedded
    assert html.count("data:image/png;base64,") == len(list(report["figures"].glob("*.png")))
    assert "85.00 ± 1.00" in html


def test_figures_are_nonempty_pngs(report):
    from matplotlib.image import imread

    pngs = sorted(report["figures"].glob("*.png"))
    names = {p.name for p in pngs}
    assert {
        "learning-curves-item.png",
        "learning-curves-group.png",
        "test-accuracy.png",
        "confusion.png",
        "parameters.png",
    } <= names
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(png)[..., :3]
        assert pixels.shape[0] > 200
        assert pixels.shape[1] > 500
        assert pixels.std() > 0.05, f"{png.name} looks blank"


def test_representative_run_is_closest_to_median(report):
    study = load_study(report["md"].parent)
    chosen = representative_run(study, GOLDEN)
    seed = int(study.runs.set_index("run_id").loc[chosen, "seed"])
    # Mean of item and group accuracy per seed: 0.84 -> seed 0, 0.86 -> seed 1, 0.85 -> seed 2 (the median).
    assert seed == 2


# ------------------------------------------------------------------------------------------------ partial studies


def test_report_of_a_study_with_nothing_finished(tmp_path):
    paths = build_report(build_study(tmp_path, finish=False))
    md = paths["md"].read_text()
    assert "No run has finished yet." in md
    assert "- **Pending:** 12" in md
    assert "data:image/png" not in paths["html"].read_text()


def test_report_without_control_has_no_comparisons(tmp_path):
    paths = build_report(build_study(tmp_path, control=None))
    md = paths["md"].read_text()
    assert "No comparisons" in md
    assert "(control)" not in md
    assert (paths["figures"] / "confusion.png").is_file()


@pytest.mark.slow
def test_figures_as_svg_embed_as_vectors_and_as_pdf_beside_pngs(tmp_path):
    directory = build_study(tmp_path)
    paths = build_report(directory, figure_format="svg")
    figures = paths["figures"]
    svgs = sorted(figures.glob("*.svg"))
    assert svgs
    assert not list(figures.glob("*.png"))
    html = paths["html"].read_text()
    assert html.count("data:image/svg+xml;base64,") == len(svgs)
    assert "data:image/png" not in html
    assert "](figures/test-accuracy.svg)" in paths["md"].read_text()
    first = svgs[0].read_bytes()
    assert first.lstrip().startswith(b"<?xml")
    assert b"<svg" in first
    assert b"<text" not in first  # text as outlines: the picture does not depend on the reader's fonts

    paths = build_report(directory, figure_format="pdf")  # the same directory: the SVGs of before go
    assert not list(figures.glob("*.svg"))
    pdfs, pngs = sorted(figures.glob("*.pdf")), sorted(figures.glob("*.png"))
    assert [p.stem for p in pdfs] == [p.stem for p in pngs]
    assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    assert paths["html"].read_text().count("data:image/png;base64,") == len(pngs)  # the HTML shows the PNGs
    md = paths["md"].read_text()
    assert "![Test accuracy](figures/test-accuracy.png)" in md
    assert "Also as [PDF](figures/test-accuracy.pdf)." in md
    again = build_report(directory, figure_format="pdf")["figures"] / "test-accuracy.pdf"
    assert again.read_bytes() == (figures / "test-accuracy.pdf").read_bytes()  # no date stamp: same bytes


def test_figure_format_option_on_report_and_run():
    from mtlab.cli import report_cmd, study_cmd

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    report_cmd.register(commands)
    study_cmd.register(commands)
    assert parser.parse_args(["report", "d"]).figure_format is None  # the directory's last format, else png
    assert parser.parse_args(["report", "d", "--figure-format", "svg"]).figure_format == "svg"
    assert parser.parse_args(["run", "fashion-mtl", "--figure-format", "pdf"]).figure_format == "pdf"
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "d", "--figure-format", "jpg"])


def test_test_results_are_dots_with_intervals_on_an_axis_holding_them(report):
    from mtlab.report.figures import accuracy_dots, variant_colors

    study = load_study(report["md"].parent)
    summary = summary_frame(study)
    fig = accuracy_dots(study, summary, variant_colors(study.variants))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Test accuracy — item", "Test accuracy — group"]
    for ax, task in zip(panels, ["item", "group"], strict=True):
        assert not ax.patches, "bars: a length from a zoomed axis misleads"
        lo, hi = ax.get_xlim()
        values = summary[[f"{task}.acc.mean", f"{task}.acc.ci_low", f"{task}.acc.ci_high"]].to_numpy() * 100
        values = values[np.isfinite(values)]
        assert lo <= values.min()
        assert hi >= values.max()
        assert hi - lo >= 5.0  # at least 5 percentage points wide


def test_learning_curves_rank_the_variants_that_trained_the_task(report, tmp_path):
    from mtlab.report.figures import best_first

    study = load_study(report["md"].parent)
    # item means: golden 85, "independent, group->item" 82.33, control 81.33; the partial variant's single run (87)
    # is not ranked before variants with a spread.
    assert best_first(study, summary_frame(study), "item") == [GOLDEN, "independent, group->item", CONTROL, PARTIAL]
    morpho = load_study(build_morpho_study(tmp_path))
    assert "thickness alone" not in best_first(morpho, summary_frame(morpho), "digit")  # never trained digit
    assert best_first(morpho, summary_frame(morpho), "thickness")[0] == "thickness alone"  # the lowest MAE is best


def test_crowded_learning_curves_grey_out_all_but_the_highlighted(report):
    from mtlab.report.figures import learning_curves, variant_colors

    study = load_study(report["md"].parent)
    fig = learning_curves(study, "item", variant_colors(study.variants), highlight=[GOLDEN, CONTROL])
    ax = fig.axes[0]
    grey = [line for line in ax.lines if line.get_color() == "#b0b0b0"]
    coloured = [line for line in ax.lines if line.get_color() != "#b0b0b0"]
    assert len(grey) == len(study.variants) - 2
    assert len(coloured) == 2
    assert coloured[0].get_color() != coloured[1].get_color()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [GOLDEN, f"{CONTROL} (control)", "other variants (2)"]


def test_confusion_titles_do_not_collide(report):
    from mtlab.report.figures import confusion_figure

    study = load_study(report["md"].parent)
    fig = confusion_figure(study, [GOLDEN, CONTROL])
    fig.draw_without_rendering()
    titles = [ax.title.get_window_extent() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4  # two variants x two tasks
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            assert not a.overlaps(b)


# Uneven seeds: the control finished 5 seeds (its seeds 3 and 4 are poor), "shared, none" only seeds 0-2 (its seeds 3
# and 4 failed), "independent, group->item" all 5, each +0.024 over the control's seed.
UNEVEN_ACC = {
    CONTROL: [0.80, 0.81, 0.79, 0.60, 0.62],
    GOLDEN: [0.815, 0.825, 0.805, None, None],
    "independent, group->item": [0.824, 0.834, 0.814, 0.624, 0.644],
    PARTIAL: [0.80, 0.81, 0.79, 0.60, 0.62],
}


def build_uneven_study(directory: Path) -> Path:
    spec = study_spec().model_copy(update={"seeds": 5})
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(name=spec.name, description=spec.description, budget="quick", spec=spec.model_dump(mode="json"),
                       command=["mtlab", "study", "toy.yaml"], environment={})
        runs = expand(spec)
        store.sync_runs(runs)
        for run in runs:
            acc = UNEVEN_ACC[run.variant][run.seed]
            if acc is None:
                store.mark_running(run.run_id, Path("runs") / run.run_id)
                store.record_failed(run.run_id, FAILED_REASON)
            else:
                store.record_done(run.run_id, fake_fit(acc, run.seed), parameters=PARAMETERS[run.variant],
                                  environment={"device": "cpu"})
    return directory


def test_delta_m_with_uneven_seeds_is_paired_shows_its_n_and_picks_the_best_variant(tmp_path):
    study = load_study(build_uneven_study(tmp_path))
    summary = summary_frame(study).set_index("variant")
    golden = summary.loc[GOLDEN]
    # On the 3 seeds it shares with the control: item 0.815 vs 0.80, group 0.915 vs 0.90. Over every finished seed
    # it would be compared with the control's mean 0.724 (its poor seeds 3 and 4 included): +11.8 %.
    paired = 100 * np.mean([0.815 / 0.80 - 1, 0.915 / 0.90 - 1])
    assert golden["delta_m"] == pytest.approx(paired)
    assert golden["delta_m.ci_low"] <= golden["delta_m"] <= golden["delta_m.ci_high"]
    assert golden["delta_m.n"] == 3
    assert summary.loc["independent, group->item", "delta_m.n"] == 5
    # +0.024 on every seed beats +1.8 % on three: the best variant is the one with more evidence and a larger gain.
    assert summary.loc["independent, group->item", "delta_m"] > golden["delta_m"]
    assert best_variant(study, summary.reset_index()) == "independent, group->item"
    # The tables show the n behind each Δm.
    table = summary_table(study, summary.reset_index())
    column = table.headers.index("Δm (%)")
    rows = {r[0].text: r[column] for r in table.rows}
    assert rows[GOLDEN].text == f"{paired:+.2f}"
    assert "n=3" in rows[GOLDEN].note
    assert "n=5" in rows["independent, group->item"].note
    assert "seeds the variant and its controls share" in table.caption
    comparisons = comparison_frame(study)
    ranking = ranking_table(study, ranking_frame(study, summary.reset_index(), comparisons), comparisons)
    assert any(r[1].text == GOLDEN and "n=3" in r[3].note for r in ranking.rows)


def test_delta_m_caption_says_what_a_three_seed_interval_spans():
    # The worst to the best single seed holds for one task only (test_stats has a two-task case below the worst).
    from mtlab.report.tables import DELTA_M_CI

    assert "10 possible resamples" in DELTA_M_CI
    assert "for one task the worst to the best single seed" in DELTA_M_CI
    assert "for several tasks it can reach beyond" in DELTA_M_CI


def test_comparisons_table_says_which_tests_are_undefined_and_leaves_them_out_of_the_family():
    from mtlab.report.render import verdict_sentence
    from mtlab.report.stats import compare
    from mtlab.report.tables import comparison_table
    from test_stats import metrics_frame

    frame = metrics_frame(
        {
            ("control", "item"): [0.70, 0.71, 0.69],
            ("variant", "item"): [0.71, 0.72, 0.70],  # +1 pp on every seed
            ("control", "group"): [0.80, 0.82, 0.81, 0.83],
            ("variant", "group"): [0.85, 0.86, 0.86, 0.88],
        }
    )
    comparisons = compare(frame, {"variant": {"item": "control", "group": "control"}})
    table = comparison_table(comparisons)
    rows = {r[1].text: r for r in table.rows}
    t_p = table.headers.index("Paired t p")
    assert rows["item"][t_p].text == "–"
    assert "the same difference on every seed" in rows["item"][t_p].note
    assert rows["group"][t_p].note == ""
    assert "family of all 1 comparisons" in table.caption
    assert "Undefined tests in this table: 1." in table.caption
    assert "1e-12" in table.caption  # the tolerance for "the same" and "identical" is stated
    assert "over the 1 comparisons" in verdict_sentence(comparisons)
    assert "variant on item" not in verdict_sentence(comparisons)  # not a win


def test_missing_store_is_a_user_error_and_creates_nothing(tmp_path):
    with pytest.raises(MtlabError, match=re.escape(str(tmp_path))):
        build_report(tmp_path)
    assert not (tmp_path / STORE_NAME).exists()


def test_store_name_matches_runner():
    from mtlab.study.runner import STORE_NAME as RUNNER_STORE_NAME

    assert STORE_NAME == RUNNER_STORE_NAME


def test_report_command_prints_paths(tmp_path, capsys):
    from mtlab.cli import report_cmd

    parser = argparse.ArgumentParser()
    report_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["report", str(build_study(tmp_path))])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "report.html") in out
    assert str(tmp_path / "report.md") in out


# -------------------------------------------------------------------------------------------------- real browser

CHROMIUM = Path("/usr/bin/chromium")


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={home / 'profile'}",
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)}, check=False
    )


@pytest.mark.slow  # a real browser
def test_report_renders_in_headless_chromium(report, tmp_path):
    from matplotlib.image import imread

    url = report["html"].resolve().as_uri()
    shot = tmp_path / "report.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url, home=tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert pixels.std() > 0.05, "the screenshot looks blank"
    assert not_white > 0.05, "the screenshot looks blank"

    dom = chromium("--dump-dom", url, home=tmp_path).stdout
    assert "<table>" in dom
    assert "</table>" in dom
    assert "85.00 ± 1.00" in dom
    assert dom.count("<img") == len(list(report["figures"].glob("*.png")))


# ------------------------------------------------------------------------------- weighting studies: new figures

PAIR_TASK_NAMES = ["leq", "digit_a", "digit_b"]
# Test accuracy of leq per method and seed at lr 0.001 (0.003 adds 0.01); the digit tasks sit 0.1 higher.
# mean gains +4, +4.5 and +4 pp over fixed (a gain with some spread: the same gain on every seed is no test).
LEQ_ACC = {"fixed": [0.80, 0.82, 0.81], "mean": [0.84, 0.865, 0.85], "leq alone": [0.78, 0.79, 0.80]}


def weighting_spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "toy-weighting",
            "description": "Weighting methods on digit pairs (fake numbers for tests).",
            "base": {
                "data": {"dataset": "mnist-pairs", "val_fraction": 0.0},
                "model": {"kind": "pairs", "branch": {"type": "mlp", "widths": [8]}, "head": {"widths": [4]}},
                "train": {"epochs": 3, "diagnostics": {"every": 2}},
            },
            "variants": {
                "fixed": {"set": {"loss.method": "fixed"}},
                "mean": {"set": {"loss.method": "mean"}},
                "leq alone": {"set": {"tasks": ["leq"]}},
            },
            "grid": {"optim.lr": [0.001, 0.003]},
            "seeds": 3,
            "control": {"match": {"variant": "fixed"}},
        }
    )


def weighting_fit(run) -> FakeFit:
    lr_gain = 0.01 if run.labels["optim.lr"] == "0.003" else 0.0
    leq = LEQ_ACC[run.labels["variant"]][run.seed] + lr_gain
    tasks = run.config.task_names
    acc = {t: leq if t == "leq" else min(0.99, leq + 0.1) for t in tasks}
    history = []
    for epoch in range(1, 4):
        record = {"epoch": epoch, "lr": 1e-3, "seconds": 1.0, "step_seconds": 0.004, "train.loss": 1.0 / epoch}
        for i, t in enumerate(tasks):
            record.update({f"train.{t}.loss": 1.0 / epoch, f"train.{t}.acc": acc[t] - 0.02 * (3 - epoch),
                           f"train.{t}.weight": 0.5 if t == "leq" else 0.25 + 0.01 * epoch * i})
        if len(tasks) > 1:
            for a, b in [("leq", "digit_a"), ("leq", "digit_b"), ("digit_a", "digit_b")]:
                cos = 0.3 - 0.1 * epoch + 0.02 * run.seed + (0.2 if (a, b) == ("digit_a", "digit_b") else 0.0)
                record.update({f"grad.{a}~{b}.cos_mean": cos, f"grad.{a}~{b}.cos_p10": cos - 0.3,
                               f"grad.{a}~{b}.conflict": 0.2 * epoch, f"grad.{a}~{b}.ratio": 1.5})
        history.append(record)
    test = {"test.loss": 0.5}
    for t in tasks:
        test.update({f"test.{t}.loss": 1.0 - acc[t], f"test.{t}.acc": acc[t]})
    return FakeFit(history, test, {}, {t: confusion(acc[t], 2 if t == "leq" else 10) for t in tasks}, 3, 3.0)


@pytest.fixture(scope="module")
def weighting_report(built_once) -> dict[str, Path]:
    return built_once("test_report-weighting", build_weighting_report)


def build_weighting_report(directory: Path) -> dict[str, Path]:
    spec = weighting_spec()
    runs = expand(spec)
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(name=spec.name, description=spec.description, budget=None, spec=spec.model_dump(mode="json"),
                       command=["mtlab", "run", "toy.yaml"], environment={})
        store.sync_runs(runs)
        for run in runs:
            store.record_done(run.run_id, weighting_fit(run), parameters=1000, environment={"device": "cpu"})
    return build_report(directory)


def test_weighting_report_leads_with_the_ranking_and_says_who_beats_the_control(weighting_report):
    md = weighting_report["md"].read_text()
    summary = md.split("## Summary", 1)[1].split("## Comparisons", 1)[0]
    assert summary.index("### Ranking") < summary.index("### All variants")
    ranking = summary.split("### Ranking", 1)[1].split("### All variants", 1)[0]
    first = next(line for line in ranking.splitlines() if line.startswith("| 1 |"))
    assert "mean, 0.003" in first
    assert "4.0 ms" in first  # time per step
    # mean beats fixed by +4 to +4.5 pp on every seed of every task: 6 comparisons of "mean", 2 of "leq alone" =
    # family 8.
    assert "Holm-adjusted 0.05 level over the 8 comparisons" in summary
    assert "no variant beats" not in summary
    assert "Δm = 100/T" in summary  # the definition is stated
    # Δm interval: each seed's leq and digit gains are +4, +4.5, +4 pp on 0.80/0.82/0.81 (lr 0.001), so the interval
    # spans the per-seed values 100 * mean(0.04 / 0.80, 0.04 / 0.90, 0.04 / 0.90), 100 * mean(0.045 / 0.82, ...) ...
    table = summary.split("### All variants", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("| mean, 0.001 |"))
    per_seed = [100 * np.mean([g / c, g / (c + 0.1), g / (c + 0.1)]) for g, c in [(0.04, 0.80), (0.045, 0.82),
                                                                                   (0.04, 0.81)]]
    assert f"[{min(per_seed):+.2f}, {max(per_seed):+.2f}]" in row
    comparisons = md.split("## Comparisons", 1)[1].split("## Figures", 1)[0]
    assert "Holm p" in comparisons
    assert "Effect size d_z" in comparisons
    assert "family of all 8 comparisons" in comparisons


def test_weighting_report_draws_trade_off_sweep_conflict_and_weights(weighting_report):
    from matplotlib.image import imread

    figures = weighting_report["figures"]
    new = ["trade-off.png", "sweep-optim.lr.png", "gradient-conflict.png", "gradient-conflict-pairs.png",
           "task-weights.png"]
    md = weighting_report["md"].read_text()
    html = weighting_report["html"].read_text()
    for name in new:
        pixels = imread(figures / name)[..., :3]
        assert pixels.std() > 0.05, f"{name} looks blank"
        assert f"figures/{name}" in md
    assert html.count("data:image/png;base64,") == len(list(figures.glob("*.png")))
    assert "Trade-off between tasks" in html
    assert "Sweep: optim.lr" in html


def test_equal_parameter_counts_are_a_sentence_not_a_figure(weighting_report):
    md = weighting_report["md"].read_text()
    assert "### Parameters\n\n*Every variant (6) has 1,000 trainable parameters; no figure is drawn.*" in md
    assert not (weighting_report["figures"] / "parameters.png").exists()


def test_trade_off_labels_do_not_overlap(weighting_report):
    from mtlab.report.figures import variant_colors
    from mtlab.report.tradeoff import tradeoff_figure

    study = load_study(weighting_report["md"].parent)
    fig = tradeoff_figure(study, variant_colors(study.variants))
    fig.draw_without_rendering()
    for ax in fig.axes:
        boxes = [t.get_window_extent() for t in ax.texts]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b)
    assert sum(len(ax.texts) for ax in fig.axes) >= 3  # the non-dominated means are labelled


def test_pareto_front_and_numeric_axes():
    from mtlab.report.tradeoff import NUMBER, pareto_front

    points = np.array([[1.0, 5.0], [2.0, 4.0], [1.5, 3.0], [3.0, 1.0], [2.0, 4.0]])
    # (1.5, 3) is dominated by (2, 4); the two equal (2, 4) points dominate neither each other.
    assert pareto_front(points).tolist() == [0, 1, 4, 3]
    assert NUMBER.match("lambda=0.3")["value"] == "0.3"
    assert NUMBER.match("1e-3")["name"] is None
    assert NUMBER.match("aux on") is None


@pytest.mark.slow  # a real browser
def test_weighting_report_renders_in_headless_chromium(weighting_report, tmp_path):
    url = weighting_report["html"].resolve().as_uri()
    dom = chromium("--dump-dom", url, home=tmp_path).stdout
    assert dom.count("<img") == len(list(weighting_report["figures"].glob("*.png")))
    for title in ("Ranking", "Trade-off between tasks", "Sweep: optim.lr", "Task-gradient conflict", "Task weights"):
        assert title in dom
    shot = tmp_path / "weighting.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,4000", url, home=tmp_path)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05, "the screenshot looks blank"


# ---------------------------------------------------------------------- typed tasks: a regression task beside one


MORPHO_MAE = {"fixed": [0.50, 0.52, 0.51], "uncertainty": [0.45, 0.46, 0.44], "thickness alone": [0.40, 0.41, 0.42]}
MORPHO_ACC = {"fixed": [0.80, 0.82, 0.81], "uncertainty": [0.80, 0.82, 0.81], "thickness alone": [None] * 3}


def morpho_spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "toy-morpho",
            "description": "A digit and its stroke thickness (fake numbers for tests).",
            "base": {
                "data": {"dataset": "morpho-mnist-sample"},
                "tasks": ["digit", "thickness"],
                "model": {"trunk": {"type": "mlp", "widths": [8]}},
                "train": {"epochs": 3},
            },
            "variants": {
                "fixed": {"set": {"loss.method": "fixed"}},
                "uncertainty": {"set": {"loss.method": "uncertainty"}},
                "thickness alone": {"set": {"tasks": ["thickness"]}},
            },
            "seeds": 3,
            "control": {"match": {"variant": "fixed"}},
        }
    )


def morpho_fit(run) -> FakeFit:
    mae = MORPHO_MAE[run.variant][run.seed]
    acc = MORPHO_ACC[run.variant][run.seed]
    tasks = run.config.task_names
    values = {"thickness": {"loss": 2 * mae, "mae": mae, "rmse": 1.3 * mae, "r2": 1 - mae}}
    if "digit" in tasks:
        values["digit"] = {"loss": 1 - acc, "acc": acc, "f1": acc - 0.01}
    history = []
    for epoch in range(1, 4):
        record = {"epoch": epoch, "lr": 1e-3, "seconds": 1.0, "train.loss": 1.0 / epoch, "val.loss": 1.1 / epoch}
        for split in ("train", "val"):
            for task, metrics in values.items():
                for metric, value in metrics.items():
                    drift = (3 - epoch) * 0.05 * (1 if metric in ("loss", "mae", "rmse") else -1)
                    record[f"{split}.{task}.{metric}"] = value + drift
        history.append(record)
    test = {"test.loss": 0.5, **{f"test.{t}.{m}": v for t, ms in values.items() for m, v in ms.items()}}
    val = {k: v for k, v in history[-1].items() if k.startswith("val.")}
    # A matrix for thickness too, which no regression run records: the report must still show digit's alone.
    confusion_ = {"thickness": [[3, 1], [1, 3]], **({"digit": confusion(acc, 10)} if "digit" in tasks else {})}
    return FakeFit(history, test, val, confusion_, best_epoch=3, seconds=2.0)


def morpho_task_types(tasks: list[str]) -> dict[str, dict]:
    """What a run's metrics.json records as ``task_types`` (Task.describe())."""
    described = {
        "digit": {"type": "multiclass", "names": [str(i) for i in range(10)], "loss": "mse", "primary": "acc",
                  "metrics": {"loss": "min", "acc": "max", "f1": "max"}},
        "thickness": {"type": "regression", "names": ["thickness"], "loss": "mse", "primary": "mae",
                      "metrics": {"loss": "min", "mae": "min", "rmse": "min", "r2": "max"}},
    }  # fmt: skip
    return {t: described[t] for t in tasks}


@pytest.fixture(scope="module")
def morpho_study(built_once) -> Path:
    return built_once("test_report-morpho", build_morpho_study)


def build_morpho_study(directory: Path) -> Path:
    spec = morpho_spec()
    runs = expand(spec)
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(name=spec.name, description=spec.description, budget=None, spec=spec.model_dump(mode="json"),
                       command=["mtlab", "run", "toy-morpho.yaml"], environment={})  # fmt: skip
        store.sync_runs(runs)
        for i, run in enumerate(runs):
            # Half the runs as the runner records them today (sync_runs' config-derived description only), half
            # with the finished run's own task_types: both must read the same.
            types = morpho_task_types(run.config.task_names) if i % 2 else None
            store.record_done(run.run_id, morpho_fit(run), parameters=500, environment={}, task_types=types)
    return directory


def test_the_store_knows_each_tasks_type_primary_metric_and_directions(morpho_study):
    study = load_study(morpho_study)
    digit, thickness = study.task("digit"), study.task("thickness")
    assert (digit.type, digit.primary, digit.metrics, digit.confusion) == ("multiclass", "acc", ["acc", "f1"], True)
    assert (thickness.type, thickness.primary, thickness.confusion) == ("regression", "mae", False)
    assert thickness.metrics == ["mae", "rmse", "r2"]
    assert thickness.higher_is_better("r2")
    assert not thickness.higher_is_better("mae")
    assert study.measure == {"digit": ("acc", True), "thickness": ("mae", False)}
    assert not study.notes


def test_report_of_a_regression_task_uses_its_units_and_directions(morpho_study, tmp_path):
    md = build_report(shutil.copytree(morpho_study, tmp_path / "morpho"))["md"].read_text()  # the fixture is shared
    summary = md.split("## Summary", 1)[1].split("## Comparisons", 1)[0]
    header = next(line for line in summary.splitlines() if line.startswith("| Variant | n |"))
    assert "digit test acc ↑ (%)" in header
    assert "digit test f1 ↑ (%)" in header
    assert "thickness test mae ↓" in header
    assert "thickness test rmse ↓" in header
    assert "thickness test r2 ↑" in header
    assert "thickness test mae ↓ (%)" not in header  # MAE is in the target's units, never in percent
    row = next(line for line in summary.splitlines() if line.startswith("| uncertainty |"))
    # MAE 0.45, 0.46, 0.44: mean 0.4500 ± 0.0100, four significant digits; r2 = 1 - MAE with three decimals.
    assert "0.4500 ± 0.0100 [0.4252, 0.4748]" in row
    assert "0.550 ± 0.010" in row
    assert "81.00 ± 1.00 [78.52, 83.48]" in row  # accuracy in percent, as ever
    # The lowest MAE is the best: the single-task variant, bold; the sentence says so with the metric named.
    alone = next(line for line in summary.splitlines() if line.startswith("| thickness alone |"))
    assert "**0.4100 ± 0.0100 [0.3852, 0.4348]**" in alone
    assert "- thickness: best is thickness alone at MAE 0.4100 ± 0.0100 (n=3)" in summary
    assert "- digit: best is" in summary
    # Δm of uncertainty: digit unchanged, MAE down from 0.51 to 0.45 -> +100 * (0.06 / 0.51) / 2 > 0.
    assert f"{100 * (0.06 / 0.51) / 2:+.2f}" in row
    comparisons = md.split("## Comparisons", 1)[1].split("## Figures", 1)[0]
    line = next(li for li in comparisons.splitlines() if li.startswith("| uncertainty | thickness | fixed |"))
    assert "| mae ↓ |" in line
    assert "-0.0600" in line  # variant minus control, in the target's units, with the MAE column's decimals
    assert " pp" not in line
    assert "**better**" in line  # a significant drop of MAE is a gain (mean diff -0.06, sd 0.01: p = 0.005)
    # Both lower MAEs beat the control (a "better" verdict needs the direction: their differences are negative).
    assert "2 beat their control: uncertainty on thickness, thickness alone on thickness; none is worse" in summary


def test_figures_of_a_regression_task_are_the_right_way_up(morpho_study):
    from mtlab.report.figures import confusion_figure, learning_curves, variant_colors
    from mtlab.report.tradeoff import tradeoff_figure

    study = load_study(morpho_study)
    colors = variant_colors(study.variants)
    fig = tradeoff_figure(study, colors)
    (ax,) = [a for a in fig.axes if a.get_xlabel()]
    assert ax.get_xlabel() == "digit test acc ↑ (%)"
    assert ax.get_ylabel().startswith("thickness test mae ↓")
    assert ax.yaxis_inverted()  # lower MAE is up: better is up and right
    assert not ax.xaxis_inverted()
    curves = learning_curves(study, "thickness", colors)
    assert curves.axes[0].get_ylabel() == "mae ↓"
    assert "MAE" in curves.axes[0].get_title()
    # Confusion matrices only for the classification task, even when a store holds one for another task.
    matrices = confusion_figure(study, ["fixed"])
    titles = [a.get_title() for a in matrices.axes if a.get_title()]
    assert titles
    assert all("digit" in t for t in titles)


def test_a_store_written_before_typed_tasks_still_reports(tmp_path):
    """An old store: no ``tasks`` table, runs with loss and acc only. Opening it adds the table; every task reads as
    multiclass scored by accuracy, and the report is the one it always was."""
    import sqlite3

    build_study(tmp_path)
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        db.execute("DROP TABLE tasks")
    study = load_study(tmp_path)
    assert study.task("item").primary == "acc"
    assert study.task("item").metrics == ["acc"]  # no f1 recorded, no f1 column
    assert study.measure == {"item": ("acc", True), "group": ("acc", True)}
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone() == (0,)  # the table exists again, empty
    md = build_report(tmp_path)["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {GOLDEN} |"))
    assert "85.00 ± 1.00 [82.52, 87.48]" in row


def test_record_done_replaces_the_config_description_with_the_runs_own(tmp_path):
    spec = morpho_spec()
    runs = expand(spec)
    with ResultStore(tmp_path / STORE_NAME) as store:
        store.sync_runs(runs)
        assert store.task_info()["thickness"].primary == "mae"  # from the config, before any run finished
        changed = morpho_task_types(["thickness"])
        changed["thickness"] = {**changed["thickness"], "primary": "rmse"}
        store.record_done(runs[0].run_id, morpho_fit(runs[0]), parameters=1, environment={}, task_types=changed)
        notes: list[str] = []
        info = store.task_info(notes=notes)
    assert info["thickness"].primary == "rmse"  # the first run (study order) now says rmse
    assert any("thickness" in note for note in notes)  # the other runs still say mae: the report says so
