"""The original studies' numbers as data: the ``reference:`` spec section, its validation, the verdict logic on
constructed numbers, and the report section "Against the original study" rebuilt from a store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from mtlab.errors import ConfigError
from mtlab.report import build_report
from mtlab.report.published import delta_m_check_frame, recomputed_delta_m, row_delta_m, type_higher, values_frame
from mtlab.report.reference import (
    agreement,
    claim_verdict,
    claims_frame,
    comparison_outcome,
    holm,
    study_reference,
)
from mtlab.report.tables import STORE_NAME, StudyData, load_study
from mtlab.study.catalog import builtin_study_paths
from mtlab.study.reference import OriginalValue, Published, PublishedTable, Spread, parse_printed
from mtlab.study.spec import StudySpec, expand, load_study_spec
from mtlab.study.store import ResultStore, TaskInfo
from test_report import CONTROL, GOLDEN, fake_fit, morpho_fit, morpho_spec, study_spec

# ------------------------------------------------------------------------------------------- verdict logic


def test_agreement_with_an_exact_original_uses_this_studys_interval():
    values = np.array([80.0, 82.0, 84.0])  # mean 82, std 2, n 3
    half = stats.t.ppf(0.975, 2) * 2 / math.sqrt(3)  # 4.97
    inside = agreement(values, OriginalValue(mean=82.0))
    assert (inside.n, inside.mean, inside.std) == (3, 82.0, 2.0)
    assert inside.ci_low == pytest.approx(82 - half)
    assert inside.ci_high == pytest.approx(82 + half)
    assert inside.verdict == "within"
    assert inside.difference == 0.0
    assert agreement(values, OriginalValue(mean=82 - half + 0.01)).verdict == "within"
    above = agreement(values, OriginalValue(mean=76.0))  # this study's mean is 6 above, beyond the interval
    assert above.verdict == "above"
    assert above.difference == pytest.approx(6.0)
    assert above.diff_low == pytest.approx(6 - half)
    assert agreement(values, OriginalValue(mean=88.0)).verdict == "below"


def test_agreement_counts_the_originals_own_noise_when_it_gives_std_and_n():
    values = 83.9 + np.array([-1.0, 1.0] * 5) * math.sqrt(0.9)  # mean 83.9, sample std 1, n 10
    exact = agreement(values, OriginalValue(mean=83.0))
    welch = agreement(values, OriginalValue(mean=83.0, std=1.0, n=10))
    assert exact.se == pytest.approx(1 / math.sqrt(10))
    assert welch.se == pytest.approx(math.sqrt(0.2))
    # 0.9 above: beyond this study's interval alone (half-width 0.72), within Welch's (0.94, df 18).
    assert exact.verdict == "above"
    assert welch.verdict == "within"
    assert welch.diff_high - welch.difference == pytest.approx(stats.t.ppf(0.975, 18) * math.sqrt(0.2))


def test_agreement_needs_two_runs():
    one = agreement(np.array([81.0]), OriginalValue(mean=80.0, std=1.0, n=10))
    assert one.verdict == "too few runs"
    assert one.difference == 1.0
    assert math.isnan(one.ci_low)
    assert agreement(np.array([]), OriginalValue(mean=80.0)).verdict == "too few runs"


def test_holm_step_down_keeps_order_and_skips_nan():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.5])
    assert adjusted[0] == pytest.approx(0.4)
    assert math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.5)
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(
    ("expect", "n_pairs", "diff", "p", "outcome"),
    [
        ("better", 10, 1.5, 0.01, "supported"),
        ("better", 10, 1.5, 0.20, "not shown"),
        ("better", 10, -1.5, 0.01, "contradicted"),
        ("better", 10, 0.0, math.nan, "not shown"),
        ("better", 1, 3.0, math.nan, "untestable"),
        ("not_worse", 10, -0.5, 0.30, "supported"),
        ("not_worse", 10, -2.0, 0.001, "contradicted"),
        ("not_worse", 10, 2.0, 0.001, "supported"),
    ],
)
def test_comparison_outcome(expect, n_pairs, diff, p, outcome):
    assert comparison_outcome(expect, n_pairs, diff, p) == outcome


def test_claim_verdict():
    assert claim_verdict(["supported", "supported"]) == "supported"
    assert claim_verdict(["supported", "contradicted", "not shown"]) == "contradicted"
    assert claim_verdict(["supported", "not shown", "untestable"]) == "not shown"
    assert claim_verdict(["supported", "untestable"]) == "untestable"


# ---------------------------------------------------------------------------------------------- validation

REFERENCE = {
    "source": "A constructed study",
    "measure": "test accuracy",
    "budget": "quick",
    "differences": ["the original used the test set for validation"],
    "values": {GOLDEN: {"item": {"acc": {"mean": 85.0, "std": 1.0, "n": 10}}}, CONTROL: {"item": {"acc": 90.0}}},
    "claims": [
        {"claim": "sharing helps item", "compare": [{"variant": GOLDEN, "vs": CONTROL, "task": "item"}]},
        {"claim": "independent trunks help item", "compare": [{"variant": CONTROL, "vs": GOLDEN, "task": "item"}]},
        {
            "claim": "sharing does not hurt group",
            "compare": [{"variant": GOLDEN, "vs": CONTROL, "task": "group", "expect": "not_worse"}],
        },
    ],
}


def spec_file(tmp_path: Path, reference: dict) -> Path:
    raw = study_spec().model_dump(mode="json", exclude={"reference"})
    raw["budgets"] = {"quick": {"seeds": 2}}
    raw["reference"] = reference
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_valid_reference_loads(tmp_path):
    spec = load_study_spec(spec_file(tmp_path, REFERENCE))
    assert spec.reference.values[CONTROL]["item"]["acc"].mean == 90.0  # a bare number is a mean
    assert spec.reference.values[GOLDEN]["item"]["acc"].n == 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["values"].update({"shared, nope": {"item": {"acc": 1.0}}}), "reference.values.'shared, nope'"),
        (lambda r: r["values"][GOLDEN].update({"colour": {"acc": 1.0}}), f"reference.values.'{GOLDEN}'.colour"),
        (lambda r: r["claims"][1]["compare"][0].update(vs="shared, nope"), r"reference.claims[1].compare[0].vs"),
        (lambda r: r["claims"][0]["compare"][0].update(task="colour"), r"reference.claims[0].compare[0].variant"),
        (lambda r: r.update(budget="huge"), "reference.budget"),
        (lambda r: r["values"][GOLDEN]["item"].update({"mae": 1.0}), f"reference.values.'{GOLDEN}'.item.mae"),
        (lambda r: r["claims"][0]["compare"][0].update(metric="rmse"), "reference.claims[0].compare[0].metric"),
    ],
)
def test_unknown_variant_task_or_budget_fails_naming_the_key(tmp_path, change, message):
    reference = yaml.safe_load(yaml.safe_dump(REFERENCE))  # a deep copy
    change(reference)
    with pytest.raises(ConfigError) as error:
        load_study_spec(spec_file(tmp_path, reference))
    assert message in str(error.value)
    assert "unknown" in str(error.value)


PUBLISHED = {
    "methods": {"EW": CONTROL, "Ours": GOLDEN, "Other": None},
    "tables": [{"source": "A paper, Table 1", "protocol": "p", "budget": "quick", "columns": ["item.acc", "mr"],
                "rows": {"EW": ["90.00", "2.0"], "Ours": ["85.00", "1.0"]}}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["methods"].update(Ours="shared, nope"), "reference.published.methods.'Ours': unknown variant"),
        (lambda p: p["tables"][0].update(budget="huge"), "reference.published.tables[0].budget: unknown budget"),
        (lambda p: p["tables"][0].update(columns=["colour.acc", "mr"]), "tables[0].columns: unknown task 'colour'"),
        (lambda p: p["tables"][0].update(columns=["item.mae", "mr"]), "tables[0].columns: unknown metric 'mae'"),
    ],
)
def test_published_tables_name_known_variants_budgets_tasks_and_metrics(tmp_path, change, message):
    published = yaml.safe_load(yaml.safe_dump(PUBLISHED))
    assert load_study_spec(spec_file(tmp_path, {**REFERENCE, "published": published})).reference.published
    change(published)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_study_spec(spec_file(tmp_path, {**REFERENCE, "published": published}))


def test_structural_errors_name_the_key_path(tmp_path):
    reference = yaml.safe_load(yaml.safe_dump(REFERENCE))
    reference["values"][GOLDEN]["item"]["acc"]["std"] = -1
    with pytest.raises(ConfigError, match=r"reference\.values\..*item\.acc\.std"):
        load_study_spec(spec_file(tmp_path, reference))


# The built-in studies that reproduce an original study; the others (architectures, weighting benchmarks,
# MultiMNIST) compare methods on their own and may carry a reference where published numbers can be checked.
REPRODUCTIONS = {"fashion-mtl", "fashion-hierarchy", "cifar100-hierarchy", "mnist-pairs", "mnist-basics"}


@pytest.mark.parametrize("name", sorted(builtin_study_paths()))
def test_every_builtin_study_has_a_valid_reference(name):
    spec = load_study_spec(builtin_study_paths()[name])  # validated against the expanded study
    if spec.reference is None and name not in REPRODUCTIONS:
        pytest.skip(f"{name} reproduces no original study, so it has no reference to compare with")
    assert spec.reference is not None
    assert spec.reference.source
    assert spec.reference.values or spec.reference.claims or spec.reference.baselines or spec.reference.published
    assert spec.reference.budget in spec.budgets


# -------------------------------------------------------------------------------------------------- report


def reference_section(directory: Path, budget: str | None, overrides: dict | None = None) -> str:
    """The section of a report on a store of the constructed study run at ``budget`` with ``overrides``."""
    spec = StudySpec.model_validate({**study_spec().model_dump(mode="json"), "reference": REFERENCE})
    item_acc = {CONTROL: [0.80, 0.83, 0.81], GOLDEN: [0.84, 0.86, 0.85]}
    with ResultStore(directory / STORE_NAME) as store:
        store.set_info(name=spec.name, budget=budget, overrides=overrides or {}, spec=spec.model_dump(mode="json"),
                       command=["mtlab"])  # fmt: skip
        runs = expand(spec)
        store.sync_runs(runs)
        for run in runs:
            if run.variant in item_acc:
                fit = fake_fit(item_acc[run.variant][run.seed], run.seed)
                store.record_done(run.run_id, fit, parameters=10, environment={})
    markdown = build_report(directory)["md"].read_text()
    return markdown.split("## Against the original study", 1)[1].split("\n## ", 1)[0]


def test_report_section_against_the_original(tmp_path):
    section = reference_section(tmp_path, "quick", {"train.threads": 1, "train.device": "cpu"})  # where, not what
    assert "Original: A constructed study." in section
    assert "the original used the test set for validation" in section
    assert "Not comparable" not in section
    assert "Of 2 comparable original values: 1 within, 1 below." in section
    # GOLDEN: mean 85.00 ± 1.00 (n=3) against 85.00 ± 1.00 (n=10): within; CONTROL 81.33 against 90: below.
    golden = next(line for line in section.splitlines() if line.startswith(f"| {GOLDEN} | item acc"))
    assert "85.00 ± 1.00 n=10" in golden
    assert "85.00 ± 1.00 n=3" in golden
    assert golden.endswith("| within |")
    control = next(line for line in section.splitlines() if line.startswith(f"| {CONTROL} | item acc"))
    assert "| -8.67" in control
    assert control.endswith("| **below** |")
    # Paired differences (pp): GOLDEN - CONTROL = 4, 3, 4 -> t = 11, p = 0.008; Holm over 3 comparisons.
    claims = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    assert "sharing helps item | **supported (1 supported)**" in claims[0]
    assert "independent trunks help item | **contradicted (1 contradicted)**" in claims[1]
    assert "sharing does not hurt group | **supported (1 supported)**" in claims[2]
    p = stats.ttest_rel([84, 86, 85], [80, 83, 81]).pvalue
    assert f"| {GOLDEN} | better than | {CONTROL} | item acc (pp) | -5.00 | +3.67 |" in section
    assert f"| 3 | {min(1, 3 * p):.3f} | **supported** |" in section


@pytest.mark.parametrize(
    ("budget", "overrides", "why"),
    [
        ("default", {}, "ran budget 'default', not the original protocol's budget 'quick'"),
        ("quick", {"train.epochs": 1, "train.threads": 2}, "has overrides that change the protocol (train.epochs)"),
        ("quick", {"train.precision": "bf16"}, "has overrides that change the protocol (train.precision)"),
    ],
)
def test_another_budget_or_protocol_is_not_comparable_and_gets_no_verdicts(tmp_path, budget, overrides, why):
    section = reference_section(tmp_path, budget, overrides)
    assert f"Not comparable: this study {why}," in section
    for verdict in ("within", "below", "above", "supported", "contradicted", "comparable original values"):
        assert verdict not in section
    assert "sharing helps item" in section  # the claims are listed, untested
    assert "the original used the test set for validation" in section


def test_a_claim_is_not_supported_by_the_same_difference_on_every_seed(tmp_path):
    """+1.23 pp on every seed, as the store holds it: the differences differ by float rounding alone, so the paired
    t-test is undefined (not p ~ 1e-29) and the claim is not shown, as the comparisons table has it."""
    spec = StudySpec.model_validate({**study_spec().model_dump(mode="json"), "reference": REFERENCE})
    item_acc = {CONTROL: [0.8123, 0.8523, 0.7923], GOLDEN: [0.8246, 0.8646, 0.8046]}
    with ResultStore(tmp_path / STORE_NAME) as store:
        store.set_info(name=spec.name, budget="default", spec=spec.model_dump(mode="json"), command=["mtlab"])
        runs = expand(spec)
        store.sync_runs(runs)
        for run in runs:
            if run.variant in item_acc:
                store.record_done(run.run_id, fake_fit(item_acc[run.variant][run.seed], run.seed), parameters=10,
                                  environment={})
    study = load_study(tmp_path)
    claims = claims_frame(study, study_reference(study)).set_index("claim")
    assert math.isnan(claims.loc[1, "p"])
    assert math.isnan(claims.loc[1, "p_holm"])
    assert claims.loc[1, "outcome"] == "not shown"
    assert claims.loc[2, "outcome"] == "not shown"  # nor is the opposite claim contradicted


def test_no_reference_no_section(tmp_path):
    spec = study_spec()
    with ResultStore(tmp_path / STORE_NAME) as store:
        store.set_info(name=spec.name, budget="quick", spec=spec.model_dump(mode="json"), command=["mtlab"])
        store.sync_runs(expand(spec))
    assert "Against the original study" not in build_report(tmp_path)["md"].read_text()


def test_claims_on_a_regression_task_are_tested_in_its_direction(tmp_path):
    """A claim on a lower-is-better metric: "uncertainty weighting lowers the thickness error" is supported by a
    lower MAE (the default metric of a regression task), contradicted the other way round; values compare in the
    target's units, not in percent."""
    reference = {
        "source": "A constructed regression study",
        "values": {"uncertainty": {"thickness": {"mae": {"mean": 0.45, "std": 0.01, "n": 5}, "r2": 0.6}}},
        "claims": [
            {"claim": "uncertainty lowers the error", "compare": [{"variant": "uncertainty", "vs": "fixed",
                                                                   "task": "thickness"}]},
            {"claim": "fixed lowers the error", "compare": [{"variant": "fixed", "vs": "uncertainty",
                                                             "task": "thickness", "metric": "mae"}]},
            {"claim": "uncertainty explains more variance", "compare": [{"variant": "uncertainty", "vs": "fixed",
                                                                         "task": "thickness", "metric": "r2"}]},
        ],
    }  # fmt: skip
    spec = StudySpec.model_validate({**morpho_spec().model_dump(mode="json"), "reference": reference})
    with ResultStore(tmp_path / STORE_NAME) as store:
        store.set_info(name=spec.name, budget=None, spec=spec.model_dump(mode="json"), command=["mtlab"])
        runs = expand(spec)
        store.sync_runs(runs)
        for run in runs:
            store.record_done(run.run_id, morpho_fit(run), parameters=10, environment={})
    section = build_report(tmp_path)["md"].read_text().split("## Against the original study", 1)[1]
    mae = next(line for line in section.splitlines() if line.startswith("| uncertainty | thickness mae |"))
    assert "0.4500 ± 0.0100 n=5" in mae  # the original, in the target's units
    assert "0.4500 ± 0.0100 n=3" in mae
    assert mae.endswith("| within |")
    r2 = next(line for line in section.splitlines() if line.startswith("| uncertainty | thickness r2 |"))
    assert "| 0.600 |" in r2  # R² is no percentage
    claims = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |", "| 3 |"))]
    assert "uncertainty lowers the error | **supported (1 supported)**" in claims[0]
    assert "fixed lowers the error | **contradicted (1 contradicted)**" in claims[1]
    assert "uncertainty explains more variance | **supported (1 supported)**" in claims[2]
    # This study's Δ is signed so that > 0 is better: MAE 0.45 vs 0.51 gives +0.06 for uncertainty.
    assert "| uncertainty | better than | fixed | thickness mae | – | +0.06000 |" in section


# ------------------------------------------------------------------------------- the papers' tables as data

DENSE_TYPES = {"segmentation": "segmentation", "depth": "depth", "normal": "normals"}


def builtin_published(name: str) -> Published:
    """A built-in study's published tables, read without validating the study (no method need be registered)."""
    raw = yaml.safe_load(Path(builtin_study_paths()[name]).read_text())
    return Published.model_validate(raw["reference"]["published"])


def test_a_printed_cell_keeps_its_value_spread_and_digits():
    assert parse_printed("38.88 ±0.54") == parse_printed("38.88±0.54")
    cell = parse_printed("0.5474 ±0.0016")
    assert (cell.value, cell.spread, cell.decimals, cell.spread_decimals) == (0.5474, 0.0016, 4, 4)
    assert cell.half_unit == pytest.approx(0.00005)
    assert parse_printed("+0.30").value == 0.30
    assert parse_printed("26.2").decimals == 1  # as printed: a half unit of 0.05, not 0.005
    assert parse_printed("") is None
    with pytest.raises(ValueError, match="not a printed number"):
        parse_printed("3,4")


def test_a_standard_error_counts_as_a_std_over_its_runs():
    assert Spread(kind="standard_error", n=3).as_std(0.54) == pytest.approx(0.54 * math.sqrt(3))
    assert Spread(kind="std", n=3).as_std(0.54) == 0.54
    assert Spread(kind="unstated", n=3).as_std(0.54) is None  # not usable for an interval
    assert Spread(kind="standard_error").as_std(0.54) is None  # no run count


def _nyuv2_table(source: str) -> PublishedTable:
    return next(t for t in builtin_published("nyuv2-weighting").tables if t.source.endswith(source))


def test_nyuv2_imtl_g_printed_delta_m_is_flagged_and_every_other_row_gives_its_own():
    # GOLDEN (../shared/published/README.md, item 1): Nash-MTL Table 2 and FAMO Table 1 print -0.76 for IMTL-G; its
    # own row gives -0.60 (Aligned-MTL Table 2, which recomputes Δm, prints -0.59).
    higher = type_higher(DENSE_TYPES)
    for source in ("ICML 2022, arXiv:2202.01017), Table 2", "NeurIPS 2023, arXiv:2306.03792), Table 1"):
        table = _nyuv2_table(source)
        imtl = recomputed_delta_m(table, "IMTL-G", higher)
        assert imtl.printed == -0.76
        assert imtl.recomputed == pytest.approx(-0.600, abs=0.005)
        assert not imtl.consistent
        check = delta_m_check_frame(table, higher).set_index("method")
        assert check.loc[check["consistent"]].shape[0] == len(check) - 1
        assert check.loc["LS", "recomputed"] == pytest.approx(5.59, abs=0.01)
        assert check.loc["Nash-MTL", "recomputed"] == pytest.approx(-4.05, abs=0.01)
    aligned = _nyuv2_table("CVPR 2023, arXiv:2305.19000), Table 2")  # depth errors to 2 decimals; IMTL-G -0.59
    imtl = recomputed_delta_m(aligned, "IMTL-G", higher)
    assert imtl.printed == -0.59
    assert imtl.consistent  # rounding the depth errors to 0.54 / 0.68 moves Δm by up to about 0.5
    assert imtl.bound > 0.4
    assert delta_m_check_frame(aligned, higher)["consistent"].all()


def test_cityscapes_printed_delta_m_all_given_by_their_rows():
    higher = type_higher(DENSE_TYPES)
    tables = builtin_published("cityscapes-weighting").tables
    checked = [delta_m_check_frame(t, higher) for t in tables]
    assert sum(len(c) for c in checked) == 11 + 12 + 13  # Nash-MTL T3, FAMO T3, Aligned-MTL T4 have STL rows
    assert all(c["consistent"].all() for c in checked)
    nash = checked[0].set_index("method")
    assert nash.loc["MGDA", "recomputed"] == pytest.approx(44.14, abs=0.01)  # GOLDEN: printed 44.14
    famo = next(t for t in tables if t.source.endswith("Table 3") and "FAMO" in t.source)
    assert "copy error" in famo.errata["LS"]


def test_row_delta_m_by_hand():
    table = PublishedTable(
        source="a constructed table",
        protocol="none",
        budget=None,
        columns=["segmentation.miou", "depth.abs_err", "mr", "delta_m"],
        single_task=["40.00", "0.500", "", ""],
        rows={"A": ["44.00", "0.450", "1.0", "-10.00"], "B": ["36.00", "0.550", "2.0", "+9.99"]},
    )
    higher = type_higher(DENSE_TYPES)
    # A: miou +10% (better: -10 in the papers' sign), abs_err -10% (better: -10): Δm = -10.
    value, bound = row_delta_m(table, "A", higher)
    assert value == pytest.approx(-10.0)
    # bound: miou 100 * (0.005 / 40 + 44 * 0.005 / 40^2), abs_err 100 * (0.0005 / 0.5 + 0.45 * 0.0005 / 0.25); mean
    assert bound == pytest.approx((100 * (0.005 / 40 + 44 * 0.005 / 1600) + 100 * (0.001 + 0.45 * 0.0005 / 0.25)) / 2)
    assert recomputed_delta_m(table, "A", higher).consistent
    b = recomputed_delta_m(table, "B", higher)  # gives +10.00: 9.99 is within rounding (bound ~0.12)
    assert b.recomputed == pytest.approx(10.0)
    assert b.consistent
    # Other values (this study's means) against the same row: only the single-task row's rounding is left.
    mine = row_delta_m(table, "A", higher, {("segmentation", "miou"): 40.0, ("depth", "abs_err"): 0.5})
    assert mine == (0.0, pytest.approx((100 * 40 * 0.005 / 1600 + 100 * 0.5 * 0.0005 / 0.25) / 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": {"A": ["1.0"]}}, "row 'A': 1 cells for 2 columns"),
        ({"rows": {"A": ["1.0", "x"]}}, r"row 'A', column 'delta_m': 'x' is not a printed number"),
        ({"columns": ["miou", "delta_m"]}, r"column 'miou': 'task.metric', or one of"),
        ({"errata": {"B": "why"}}, r"errata name methods without a row: \['B'\]"),
    ],
)
def test_a_malformed_published_table_fails_naming_the_cell(change, message):
    from pydantic import ValidationError

    raw = {"source": "s", "protocol": "p", "budget": None, "columns": ["segmentation.miou", "delta_m"],
           "rows": {"A": ["1.0", "2.0"]}, **change}  # fmt: skip
    with pytest.raises(ValidationError, match=message):
        PublishedTable.model_validate(raw)


def test_every_table_method_needs_a_mapping():
    from pydantic import ValidationError

    table = {"source": "T9", "protocol": "p", "budget": None, "columns": ["delta_m"], "rows": {"X": ["1.0"]}}
    with pytest.raises(ValidationError, match=r"T9: methods \['X'\] are not in 'methods'"):
        Published.model_validate({"methods": {"LS": "a"}, "tables": [table]})


def _study(values: dict[tuple[str, int, str, str], float]) -> StudyData:
    """A study of constructed test metrics: (variant, seed, task, metric) -> stored value."""
    rows = [{"run_id": f"{v}-{s}", "variant": v, "seed": s, "split": "test", "task": t, "metric": m, "value": x}
            for (v, s, t, m), x in values.items()]  # fmt: skip
    metrics = pd.DataFrame(rows)
    variants = list(dict.fromkeys(metrics["variant"]))
    info = {
        "segmentation": TaskInfo("segmentation", "segmentation", "miou", {"miou": "max", "loss": "min"}, False),
        "depth": TaskInfo("depth", "depth", "abs_err", {"abs_err": "min", "loss": "min"}, False),
    }
    return StudyData(Path("."), {}, pd.DataFrame(), metrics, pd.DataFrame(), {}, variants, list(info), [], info)


def test_verdicts_per_metric_and_on_delta_m_against_the_tables_single_task_row():
    table = PublishedTable(
        source="T",
        protocol="p",
        budget="full",
        spread=Spread(kind="standard_error", n=3),
        columns=["segmentation.miou", "depth.abs_err", "delta_m"],
        single_task=["40.00", "0.5000", ""],
        rows={"LS": ["44.00 ±1.00", "0.4500", "-10.00"], "SI": ["50.00", "0.5000", "-12.50"]},
        errata={"SI": "constructed"},
    )
    # Three seeds of "mtan, fixed": miou 0.43, 0.44, 0.45 (43, 44, 45 %), abs_err 0.40, 0.45, 0.50.
    values = {}
    for seed, (miou, err) in enumerate([(0.43, 0.40), (0.44, 0.45), (0.45, 0.50)]):
        values[("mtan, fixed", seed, "segmentation", "miou")] = miou
        values[("mtan, fixed", seed, "depth", "abs_err")] = err
    frame = values_frame(_study(values), table, {"LS": "mtan, fixed", "SI": "mtan, si"}).set_index("column")
    assert set(frame["method"]) == {"LS"}  # SI's row is a known error: shown, not compared
    miou = frame.loc["segmentation.miou"]
    # mean 44 (std 1, n 3) against 44.00 ± 1.00 SE over 3 runs (std sqrt 3): Welch, within.
    assert (miou["mean"], miou["difference"], miou["verdict"]) == (pytest.approx(44.0), pytest.approx(0.0), "within")
    assert miou["se"] == pytest.approx(math.sqrt(1 / 3 + 1.0))
    err = frame.loc["depth.abs_err"]  # mean 0.45, std 0.05; exact original 0.45: within
    assert err["verdict"] == "within"
    # Δm per seed, the papers' sign: -((43 - 40) / 40 - (0.40 - 0.5) / 0.5) / 2 * 100 = -(7.5 + 20) / 2 = -13.75,
    # then -(10 + 10) / 2 = -10, then -(12.5 + 0) / 2 = -6.25: mean -10, std 3.75; printed -10.00: within.
    dm = frame.loc["delta_m"]
    assert dm["mean"] == pytest.approx(-10.0)
    assert dm["std"] == pytest.approx(3.75)
    assert dm["verdict"] == "within"
    far = table.model_copy(update={"rows": {**table.rows, "LS": ["30.00 ±0.10", "0.9000", "+5.00"]}, "errata": {}})
    frame = values_frame(_study(values), far, {"LS": "mtan, fixed", "SI": "mtan, si"})
    si = frame[frame["variant"] == "mtan, si"]  # not an erratum any more, and no run of it
    assert set(si["verdict"]) == {"too few runs"}
    frame = frame[frame["method"] == "LS"].set_index("column")
    assert frame.loc["segmentation.miou", "verdict"] == "above"
    assert frame.loc["depth.abs_err", "verdict"] == "below"
    assert frame.loc["delta_m", "verdict"] == "below"
    assert frame.loc["segmentation.miou", "n"] == 3


def test_a_table_of_another_budget_is_shown_with_its_checks_and_no_verdicts():
    from mtlab.pages.blocks import Bullets, Heading, Table
    from mtlab.report.published import published_blocks

    published = builtin_published("nyuv2-weighting")
    reference = {"source": "s", "budget": "full", "published": published.model_dump(mode="json")}
    study = _study({("mtan, fixed", s, "segmentation", "miou"): 0.4 for s in range(3)})
    study.info.update(budget="selected", overrides={}, spec={"reference": reference})
    blocks = published_blocks(study)
    assert blocks[0] == Heading("The papers' tables")
    titles = [b.text for b in blocks if isinstance(b, Heading) and b.level == 3]
    assert len(titles) == len(published.tables)
    assert "Qin et al. (NTKMTL, NeurIPS 2025), Table 1 (secondary copy)" in titles
    facts = [item for b in blocks if isinstance(b, Bullets) for item in b.items]
    reason = "Not set against this study's runs: this study ran budget 'selected', not the original protocol's budget"
    reason += " 'full'."
    assert facts.count(reason) == len(published.tables) - 1
    assert "Not set against this study's runs: no budget of this study follows this protocol." in facts  # LibMTL's
    assert "Spread: ± is a standard error over 3 runs." in facts
    # The flag needs no run; no table of verdicts.
    flags = [item for b in blocks if isinstance(b, Bullets) for item in b.items if ": printed Δm " in item]
    assert len(flags) == 2  # no finished run of normal: the directions come from the task types
    assert all("IMTL-G: printed Δm -0.76, its row gives -0.60" in f for f in flags)
    tables = [b for b in blocks if isinstance(b, Table)]
    assert not any("This study" in b.headers and "Metric" in b.headers for b in tables)
    delta = [b for b in tables if "Printed Δm" in b.headers]
    assert all(row[7].text == "–" for b in delta for row in b.rows)  # no verdict on Δm either
