"""The papers' benchmark studies (nyuv2-, cityscapes-, celeba- and qm9-weighting): their specs validate for
every budget, they compare every registered weighting method with equal weights, and their tiny budget runs end to
end - on a few synthetic files in each dataset's official layout - to a report with Δm against both baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mtlab.config.base import DATASETS
from mtlab.report import build_report
from mtlab.report.published import values_frame
from mtlab.report.reference import delta_m_frame, study_reference
from mtlab.report.tables import load_study
from mtlab.study.catalog import find_study
from mtlab.study.reference import check_reference
from mtlab.study.runner import run_study
from mtlab.study.spec import expand
from mtlab.weighting import registered_methods

PAPER_STUDIES = {
    "nyuv2-weighting": "nyuv2",
    "cityscapes-weighting": "cityscapes",
    "celeba-weighting": "celeba",
    "qm9-weighting": "qm9",
}
SHARED = {"qm9-weighting": "shared"}
"""The variant prefix of the shared network under each method (default: SegNet-MTAN's ``mtan``)."""
LOWER = {"abs_err", "rel_err", "mean_angle", "median_angle", "mae"}
"""The compared metrics that are better lower."""
SEEDS = {"cityscapes-weighting": 2}
"""Seeds of the tiny runs (default 1): two give the verdicts an interval on the smallest study."""


pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: fastest on one thread


@pytest.mark.parametrize("name", sorted(PAPER_STUDIES))
def test_paper_study_validates_every_budget_and_compares_every_method_with_equal_weights(name):
    spec, _ = find_study(name)
    assert {"full", "tiny"} <= set(spec.budgets)
    if name != "celeba-weighting":  # no CelebA number could be verified: it has no reference section yet
        assert spec.reference.budget == "full"
        assert spec.reference.baselines is not None
    for budget in spec.budgets:
        runs = expand(spec, budget)
        check_reference(spec, runs)
        shared = [r for r in runs if len(r.config.task_names) > 1]
        assert {r.config.loss.method for r in shared} == set(registered_methods()), budget
        singles = {r.config.task_names[0] for r in runs if len(r.config.task_names) == 1}
        assert singles == set(runs[0].config.data.task_names()), "a single-task baseline for every task"
    fixed = next(r for r in expand(spec, "full") if r.variant == spec.control.variant)
    assert fixed.config.loss.method == "fixed"
    assert fixed.config.loss.weights == {}


@pytest.mark.parametrize("name", ["nyuv2-weighting", "cityscapes-weighting"])
def test_dense_paper_studies_follow_the_published_protocol(name):
    spec, _ = find_study(name)
    run = next(r for r in expand(spec, "full") if r.variant == "mtan, nash_mtl")
    c = run.config
    assert c.model.kind == "segnet_mtan"
    assert c.model.filters == [64, 128, 256, 512, 512]
    assert (c.optim.name, c.optim.lr, c.optim.schedule, c.optim.step_epochs, c.optim.step_gamma) == (
        "adam",
        1e-4,
        "step",
        100,
        0.5,
    )
    assert (c.train.epochs, c.train.test_last_epochs, c.data.val_fraction) == (200, 10, 0.0)
    assert c.train.batch_size == {"nyuv2-weighting": 2, "cityscapes-weighting": 8}[name]
    single = {r.variant: r.config for r in expand(spec, "full") if len(r.config.task_names) == 1}
    assert {c.model.kind for c in single.values()} == {"segnet"}
    assert set(spec.reference.single_task.values()) == set(single)


def test_qm9_study_follows_nash_mtls_protocol():
    """Nash-MTL's experiments/quantum_chemistry/trainer.py defaults (FAMO's trainer keeps them)."""
    spec, _ = find_study("qm9-weighting")
    runs = expand(spec, "full")
    c = next(r for r in runs if r.variant == "shared, nash_mtl").config
    assert (c.model.kind, c.model.dim, c.model.message_steps, c.model.set2set_steps) == ("mpnn", 64, 3, 3)
    assert (c.optim.name, c.optim.lr, c.optim.method_lr) == ("adam", 1e-3, 0.025)
    assert (c.optim.schedule, c.optim.plateau_factor, c.optim.plateau_patience, c.optim.min_lr) == (
        "plateau",
        0.7,
        5,
        1e-5,
    )
    assert (c.train.epochs, c.train.batch_size, c.data.test_size, c.data.val_size) == (300, 120, 10000, 10000)
    assert c.task_names == ["mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv"]
    assert c.data.normalize is False
    singles = {r.variant: r.config for r in runs if len(r.config.task_names) == 1}
    for config in singles.values():  # --method stl --main-task k: the schedule and the selection on that task
        task = config.task_names[0]
        assert config.optim.plateau_metric == config.train.early_stopping.metric == f"val.{task}.mae"
    assert set(spec.reference.single_task.values()) == set(singles)


def small(spec, keep_methods=("fixed", "nash_mtl")):
    """The spec with two weighting methods and at most two single-task variants (the test's time is its runs)."""
    variants = {}
    for key, variant in spec.variants.items():
        loss = variant.set.get("loss")
        if isinstance(loss, dict) and loss.get("method") not in keep_methods:
            continue  # a method with options of its own (cityscapes: famo's gamma) is a variant of its own
        for axis, values in variant.grid.items():  # an axis is a mapping label -> value
            if axis.startswith("loss"):
                kept = {label: v for label, v in values.items() if label in keep_methods}
            else:  # celeba's single-task grid over its 40 attributes: two of them
                kept = dict(list(values.items())[:2])
            variant = variant.model_copy(update={"grid": {**variant.grid, axis: kept}})
        variants[key] = variant
    spec = spec.model_copy(update={"variants": variants})
    if spec.reference is not None and spec.reference.published is not None:  # the papers' methods of the runs kept
        kept = {run.variant for run in expand(spec, "tiny")}
        published = spec.reference.published
        methods = {m: (v if v in kept else None) for m, v in published.methods.items()}
        tables = [t.model_copy(update={"budget": "tiny" if t.budget else None}) for t in published.tables]
        published = published.model_copy(update={"methods": methods, "tables": tables})
        spec = spec.model_copy(update={"reference": spec.reference.model_copy(update={"published": published})})
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_STUDIES))
def test_paper_study_runs_its_tiny_budget_on_files_in_the_official_layout(name, tmp_path):
    spec, _ = find_study(name)
    data = DATASETS.get(PAPER_STUDIES[name]).example(PAPER_STUDIES[name], tmp_path / "data")
    overrides = {f"data.{k}": v for k, v in data.items() if k != "dataset"}
    if name == "celeba-weighting":  # three of the 40 attributes: the report draws figures per task and task pair
        overrides["data.attributes"] = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"]
    # CelebA: two loss-based methods (a gradient method there holds a 40 x 11 M Jacobian: seconds on a GPU, not here).
    methods = ("fixed", "famo") if name == "celeba-weighting" else ("fixed", "nash_mtl")
    spec = small(spec, methods)  # the papers' tables apply to the tiny budget here
    tiny = spec.budgets["tiny"].model_copy(update={"seeds": SEEDS.get(name, 1)})
    spec = spec.model_copy(update={"budgets": {**spec.budgets, "tiny": tiny}})
    # The report sets a study against the papers only at the reference's budget and without overrides that change
    # the protocol: here the tiny budget is the reference's and the files' place is in the base config.
    base = {**spec.base, "data": {**spec.base.get("data", {}), **{k[5:]: v for k, v in overrides.items()}}}
    reference = spec.reference.model_copy(update={"budget": "tiny"})
    spec = spec.model_copy(update={"reference": reference, "base": base})
    result = run_study(spec, tmp_path / "study", budget="tiny")
    assert not result.failed
    assert result.trained == result.total > 3
    report = build_report(tmp_path / "study")["md"].read_text()
    assert "Against the original study" in report
    study = load_study(tmp_path / "study")
    reference = study_reference(study)
    m = study.metrics[study.metrics["split"] == "test"]

    def value(variant, task, metric):
        """The mean over seeds, in display units."""
        scale = 100.0 if metric in ("miou", "pixel_acc", "acc") or metric.startswith("within") else 1.0
        return scale * m[(m.variant == variant) & (m.task == task) & (m.metric == metric)]["value"].mean()

    check_papers_tables(name, report, study, value)
    if reference.baselines is None:  # celeba: the papers' single-task numbers are not published
        return
    assert "Δm against single-task baselines" in report
    # Δm by hand for one variant, against the paper's numbers and against this study's single-task runs.
    frame = delta_m_frame(study, reference).set_index("variant")
    shared = SHARED.get(name, "mtan")
    theirs, ours = [], []
    for task, per_metric in reference.baselines.values.items():
        for metric, base in per_metric.items():
            sign = -1.0 if metric in LOWER else 1.0
            mine = value(f"{shared}, nash_mtl", task, metric)
            own = value(reference.single_task[task], task, metric)
            theirs.append(sign * (mine - base) / base * 100)
            ours.append(sign * (mine - own) / own * 100)
    row = frame.loc[f"{shared}, nash_mtl"]
    assert row["mean"] == pytest.approx(sum(theirs) / len(theirs), rel=1e-9)
    assert row["own_mean"] == pytest.approx(sum(ours) / len(ours), rel=1e-9)
    assert math.isnan(row["published"])
    hard = {"hard sharing"} if name != "qm9-weighting" else set()
    assert set(frame.index) == hard | {f"{shared}, fixed", f"{shared}, nash_mtl"}  # single-task variants left out


def check_papers_tables(name, report, study, value):
    """The report's section on the papers' tables: the recomputed Δm and its flags, the secondary copies marked,
    and - on the tiny budget the tables were moved to - one method's value and Δm (or average error) beside this
    study's, with the verdict worked out here from the seeds."""
    assert "## The papers' tables" in report
    section = report.split("## The papers' tables", 1)[1].split("\n## ", 1)[0]
    assert "Verdict: this study minus the paper; 'within' when the 95% interval" in section  # the rule, stated
    published = study_reference(study).published
    if name == "nyuv2-weighting":
        assert "Printed Δm that its own row does not give:" in section
        flags = [line for line in section.splitlines() if ": printed Δm " in line]
        assert flags == [
            "- Navon et al. (Nash-MTL, ICML 2022, arXiv:2202.01017), Table 2, IMTL-G: printed Δm -0.76, its row gives "
            "-0.60 (rounding explains ±0.05)",
            "- Liu et al. (FAMO, NeurIPS 2023, arXiv:2306.03792), Table 1, IMTL-G: printed Δm -0.76, its row gives "
            "-0.60 (rounding explains ±0.03)",
        ]
    else:
        assert "Printed Δm that its own row does not give" not in section
    assert "(secondary copy)" in section
    assert "no budget of this study follows this protocol" in section or name == "celeba-weighting"  # LibMTL's
    table = published.tables[0] if name != "celeba-weighting" else published.tables[4]  # Sener & Koltun's
    method = "Nash-MTL" if name != "celeba-weighting" else "LS"
    variant = published.methods[method]
    frame = values_frame(study, table, published.methods)
    rows = frame[frame["method"] == method].set_index("column")
    seeds = SEEDS.get(name, 1)
    for column, row in rows.iterrows():
        assert row["n"] == seeds
        if column == "avg_error":  # 100 minus the mean accuracy over the attributes
            tasks = sorted(set(study.metrics.loc[study.metrics["variant"] == variant, "task"]) - {""})
            assert row["mean"] == pytest.approx(100 - np.mean([value(variant, t, "acc") for t in tasks]))
        elif column != "delta_m":
            assert row["mean"] == pytest.approx(value(variant, *column.split(".")))
    if name == "celeba-weighting":
        assert list(rows.index) == ["avg_error"]
        assert rows.loc["avg_error", "verdict"] == "too few runs"
        return
    # Δm against the table's single-task row, the paper's sign (lower is better), by hand; its verdict by hand.
    per_seed = []
    for seed in range(seeds):
        m = study.metrics[(study.metrics["split"] == "test") & (study.metrics["seed"] == seed)]
        terms = []
        for task, metric in table.metric_columns:
            scale = 100.0 if metric in ("miou", "pixel_acc") or metric.startswith("within") else 1.0
            mine = scale * m[(m.variant == variant) & (m.task == task) & (m.metric == metric)]["value"].iloc[0]
            base = table.cell("single_task", f"{task}.{metric}").value
            terms.append((1.0 if metric in LOWER else -1.0) * (mine - base) / base * 100)
        per_seed.append(np.mean(terms))
    dm = rows.loc["delta_m"]
    assert dm["mean"] == pytest.approx(np.mean(per_seed))
    printed = table.cell(method, "delta_m").value  # exact: Nash-MTL prints no spread
    if seeds >= 2:
        half = stats.t.ppf(0.975, seeds - 1) * np.std(per_seed, ddof=1) / math.sqrt(seeds)
        low, high = np.mean(per_seed) - printed - half, np.mean(per_seed) - printed + half
        assert dm["verdict"] == ("within" if low <= 0 <= high else "above" if low > 0 else "below")
    else:
        assert dm["verdict"] == "too few runs"
    if name == "qm9-weighting":  # the text copy gives MR and Δm only: Δm is the one value compared, not recomputed
        assert list(rows.index) == ["delta_m"]
        table_1 = section.split("### ", 2)[1]  # Nash-MTL Table 1: no per-target values, so no table of them
        assert "| Method | Variant | Metric | Paper |" not in table_1
        line = next(x for x in table_1.splitlines() if x.startswith(f"| {method} | `{variant}` | {printed:+.1f} ± 1.4"))
        assert "| consistent |" not in line  # its row prints no MAE to recompute Δm from
        assert f"| {-printed:+.1f} | {-dm['mean']:+.2f} |" in line
        return
    miou = rows.loc["segmentation.miou"]
    line = next(x for x in section.splitlines() if x.startswith(f"| {method} | `{variant}` | segmentation miou |"))
    assert f"| {table.cell(method, 'segmentation.miou').value:.2f} |" in line
    assert line.rstrip(" |").endswith(miou["verdict"]) or line.endswith(f"**{miou['verdict']}** |")
    line = next(x for x in section.splitlines() if x.startswith(f"| {method} | `{variant}` | {printed:+.2f}"))
    assert "| consistent |" in line
    assert f"| {-printed:+.2f} | {-dm['mean']:+.2f} |" in line  # both in mtlab's sign: the negation


# ------------------------------------------------------------------- the papers' tables against their text copy

TABLES_MD = Path("shared") / "published" / "tables.md"
"""The text copy of the papers' tables the studies' ``reference.published`` was transcribed from, in the project's
shared folder beside the checkout (``../shared``; a worktree finds it further up)."""

COLUMNS = {"seg_mIoU": "segmentation.miou", "seg_pix_acc": "segmentation.pixel_acc", "depth_abs_err": "depth.abs_err",
           "depth_rel_err": "depth.rel_err", "normal_angle_mean": "normal.mean_angle",
           "normal_angle_median": "normal.median_angle", "normal_within_11.25deg": "normal.within_11_25",
           "normal_within_22.5deg": "normal.within_22_5", "normal_within_30deg": "normal.within_30", "MR": "mr",
           "delta_m_pct": "delta_m", "avg_error_pct": "avg_error", "delta_p_pct": "delta_p"}  # fmt: skip
"""tables.md's column names as the studies' columns; its other columns are not transcribed."""

# Each study table's source -> (the heading of tables.md's section it is in, the `source` of its rows there).
TRANSCRIBED = {
    "nyuv2-weighting": [
        ("NYUv2, SegNet", "Nash-MTL Table 2"), ("NYUv2, SegNet", "FAMO Table 1"), ("NYUv2, SegNet", "FAMO Table 5"),
        ("NYUv2, SegNet", "NTKMTL* NTKMTL Table 1"), ("NYUv2, SegNet", "Aligned-MTL Table 2"),
        ("NYUv2 Delta_p", "DB-MTL Table 6"), ("NYUv2 Delta_p", "DB-MTL Table 1"),
    ],
    "cityscapes-weighting": [
        ("Cityscapes 7", "Nash-MTL Table 3"), ("Cityscapes 7", "FAMO Table 3"), ("Cityscapes 7", "FAMO Table 7"),
        ("Cityscapes 7", "NTKMTL* NTKMTL Table 7"), ("Cityscapes 7", "Aligned-MTL Table 4"),
        ("Cityscapes Delta_p", "DB-MTL Table 2"),
    ],
    "celeba-weighting": [
        ("CelebA", "FAMO Table 3"), ("CelebA", "FAMO Table 7"), ("CelebA", "NTKMTL* NTKMTL Table 2"),
        ("CelebA", "EXTRA* Table 1"), ("CelebA", "Sener&Koltun Table 1"), ("CelebA", "F-MTL Table 2"),
        ("CelebA", "Recon Table 2"),
    ],
    "qm9-weighting": [
        ("QM9 (Nash-MTL", "Nash-MTL Table 1"), ("QM9 (Nash-MTL", "Nash-MTL Table 6"),
        ("QM9 (Nash-MTL", "FAMO Table 2"), ("QM9 (Nash-MTL", "FAMO Table 6"),
        ("QM9 (Nash-MTL", "NTKMTL* NTKMTL Table 6"), ("QM9 Delta_p", "DB-MTL Table 3"),
    ],
}  # fmt: skip


def published_tables_md() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    return next((p / TABLES_MD for p in [here, *here.parents] if (p / TABLES_MD).is_file()), None)


def tables_md_rows(path: Path) -> dict[tuple[str, str], list[dict[str, str]]]:
    """(section heading, source) -> its rows, each column -> cell, as tables.md prints them."""
    found: dict[tuple[str, str], list[dict[str, str]]] = {}
    title, header = "", None
    for line in path.read_text().splitlines():
        if line.startswith("####"):
            title, header = line.lstrip("#").strip(), None
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            else:
                row = dict(zip(header, cells, strict=True))
                found.setdefault((title, row["source"]), []).append(row)
    return found


def _same(cell: str) -> str:
    """A cell without spaces and plus signs (tables.md writes '38.88 ±0.54' and '-1.78±0.45', '+0.30')."""
    return cell.replace(" ", "").replace("+", "")


@pytest.mark.parametrize("name", sorted(TRANSCRIBED))
def test_transcribed_tables_match_the_papers_text_copy(name):
    """Every cell of the studies' published tables is tables.md's, and every number tables.md gives for a
    transcribed table's rows (in a transcribed column) is in the study - so a typo cannot hide."""
    path = published_tables_md()
    if path is None:
        pytest.skip(f"no text copy of the papers' tables ({TABLES_MD}) beside this checkout")
    rows = tables_md_rows(path)
    spec, _ = find_study(name)
    tables = spec.reference.published.tables
    assert len(tables) == len(TRANSCRIBED[name])
    for table, (section, source) in zip(tables, TRANSCRIBED[name], strict=True):
        title = next(t for t, s in rows if t.startswith(section) and s == source)
        printed = rows[(title, source)]
        assert [r["method"] for r in printed if r["method"] != "STL"] == list(table.rows), source
        for r in printed:
            cells = table.single_task if r["method"] == "STL" else table.rows[r["method"]]
            assert cells is not None, f"{source}: the STL row is not transcribed"
            for column, value in r.items():
                if column not in COLUMNS:
                    continue
                if COLUMNS[column] not in table.columns:
                    assert value == "", f"{source}, {r['method']}: {column} {value!r} is not transcribed"
                    continue
                mine = str(cells[table.columns.index(COLUMNS[column])])
                assert _same(mine) == _same(value), f"{source}, {r['method']}, {column}: {mine!r} vs {value!r}"


def test_paper_studies_name_where_their_data_comes_from():
    for name, dataset in PAPER_STUDIES.items():
        spec, path = find_study(name)
        assert spec.base["data"]["dataset"] == dataset
        assert "mtlab data list" in Path(path).read_text()


def test_reference_baselines_name_known_tasks_metrics_and_variants():
    from pydantic import ValidationError

    from mtlab.errors import ConfigError
    from mtlab.study.reference import Reference

    spec, _ = find_study("cityscapes-weighting")
    runs = expand(spec, "tiny")
    raw = spec.reference.model_dump()

    def check(**change):
        reference = Reference.model_validate({**raw, **change})
        check_reference(spec.model_copy(update={"reference": reference}), runs)

    baselines = raw["baselines"]
    values = {**baselines["values"], "normal": {"mean_angle": 25.0}}
    with pytest.raises(ConfigError, match=r"reference\.baselines\.values\.normal: unknown task"):
        check(baselines={**baselines, "values": values}, single_task={**raw["single_task"], "normal": "hard sharing"})
    with pytest.raises(ConfigError, match=r"baselines\.values\.depth\.acc: unknown metric 'acc'; depth is a depth"):
        check(baselines={**baselines, "values": {**baselines["values"], "depth": {"acc": 1.0}}})
    with pytest.raises(ConfigError, match=r"reference\.single_task\.depth: unknown task 'depth'"):
        check(single_task={"segmentation": "single segmentation", "depth": "single segmentation"})
    with pytest.raises(ConfigError, match=r"reference\.delta_m\.'mtan, nashmtl': unknown variant"):
        check(delta_m={"mtan, nashmtl": -4.0})
    with pytest.raises(ValidationError, match="delta_m and single_task need baselines"):
        Reference.model_validate({**raw, "baselines": None})
    with pytest.raises(ValidationError, match=r"single_task names no variant for the baseline tasks \['depth'\]"):
        Reference.model_validate({**raw, "single_task": {"segmentation": "single segmentation"}})
    check(delta_m={"mtan, nash_mtl": {"mean": -4.0, "note": "a made-up number, for this test only"}})


def test_cityscapes_auto_lambda_learns_its_weights_at_the_authors_rate():
    """Auto-Lambda's authors use a weight learning rate of 3e-5 on Cityscapes (1e-4 elsewhere, mtlab's default)."""
    spec, _ = find_study("cityscapes-weighting")
    for budget in spec.budgets:
        lrs = {r.config.loss.lr for r in expand(spec, budget) if r.config.loss.method == "auto_lambda"}
        assert lrs == {3e-5}, budget
    spec, _ = find_study("nyuv2-weighting")
    assert {r.config.loss.lr for r in expand(spec, "full") if r.config.loss.method == "auto_lambda"} == {1e-4}
