"""Times in a report say what they were measured on (CPU, threads, workers, load at the start) and that they are not
comparable across machines; a store from before that record still reports."""

from __future__ import annotations

import sqlite3

from mtlab import environment
from mtlab.report.render import machine_text, report_blocks, timings_note, to_markdown
from mtlab.report.tables import comparison_frame, load_study, summary_frame
from mtlab.study.runner import run_study
from mtlab.study.spec import StudySpec
from mtlab.study.store import ResultStore

SPEC = {
    "name": "timed",
    "seeds": 1,
    "base": {
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 200, "test_subset": 100},
        "model": {"trunk": {"type": "mlp", "widths": [8]}},
        "train": {"epochs": 1, "batch_size": 100},
    },
}
CONTEXT = {
    "started": "2026-12-03 10:57:31 UTC",
    "cpu": "AMD EPYC",
    "cpu_flags": ["avx", "avx2", "fma"],
    "torch_cpu_capability": "AVX2",
    "cores": 2,
    "torch_threads": 2,
    "executor": "processes",
    "workers": 2,
    "threads_per_worker": 1,
    "load_average": [3.5, 2.25, 1.0],
    "platform": "Linux",
}


def test_machine_text_and_note_name_what_times_depend_on():
    assert machine_text(CONTEXT) == (
        "AMD EPYC (avx, avx2, fma, torch AVX2), 2 cores, torch 2 threads, processes: 2 worker(s) x 1 thread(s), "
        "load average 3.5 / 2.25 / 1 at the start (2026-12-03 10:57:31 UTC)"
    )
    assert timings_note([CONTEXT]).startswith(f"Times were measured on {machine_text(CONTEXT)}. Times are not ")
    assert "over 2 starts of training: 1. AMD EPYC" in timings_note([CONTEXT, CONTEXT])
    assert "not comparable across machines" in timings_note(None)
    assert "does not describe" in timings_note(None)


def test_timing_context_describes_this_machine():
    context = environment.timing_context({"executor": "local", "workers": 1, "threads": 2})
    assert (context["executor"], context["workers"], context["threads_per_worker"]) == ("local", 1, 2)
    assert context["torch_threads"] >= 1
    assert context["cores"] >= 1
    assert set(context["cpu_flags"]) <= set(environment.SPEED_FLAGS)
    assert context["load_average"] is None or len(context["load_average"]) == 3


def _report(directory) -> str:
    """The report's Markdown, without its figures (what is tested here is text)."""
    study = load_study(directory)
    return to_markdown(report_blocks(study, summary_frame(study), comparison_frame(study), []), directory)


def test_each_start_of_training_is_recorded_and_reported_and_old_stores_still_report(tmp_path):
    spec = StudySpec.model_validate(SPEC)
    run_study(spec, tmp_path, workers=1)
    run_study(spec, tmp_path, workers=1)  # nothing left to train: no new record
    with ResultStore(tmp_path / "results.sqlite") as store:
        timings = store.info()["timings"]
    assert len(timings) == 1
    assert timings[0]["workers"] == 1
    assert timings[0]["cpu_flags"] == environment.cpu_flags()

    more = StudySpec.model_validate({**SPEC, "seeds": 2})  # one more seed: a second start of training
    run_study(more, tmp_path, workers=1, redefine=True)  # a new definition of the directory
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert len(store.info()["timings"]) == 2
    report = _report(tmp_path)
    assert "Times were measured over 2 starts of training" in report
    assert "not comparable across machines" in report
    assert "Training started (2)" in report

    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # a store from before the record
        db.execute("DELETE FROM study WHERE key = 'timings'")
    db.close()
    report = _report(tmp_path)
    assert timings_note(None) in report
    assert "Training started" not in report
