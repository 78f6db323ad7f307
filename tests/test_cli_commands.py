"""The ``mtlab`` entry point offers every command and analysis, and user errors stay one line with exit code 2."""

from __future__ import annotations

import pytest

from mtlab.cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--help"],
        ["analyze", "pca", "--help"],
        ["analyze", "separability", "--help"],
        ["analyze", "filters", "--help"],
        ["studies", "--help"],
    ],
)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: mtlab" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "no-such-search"], "no-such-search"),
        (["search", "mnist-mlp", "--trials", "0"], "--trials"),
        (["analyze", "pca", "--dataset", "mnist-sample", "--task", "colour"], "colour"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mtlab: error:")
    assert message in err


def test_run_passes_the_seed_grouping_options_to_the_study(monkeypatch, tmp_path, capsys):
    from types import SimpleNamespace

    from mtlab.study import runner

    seen = {}

    def fake_run_study(spec, out, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(total=0, trained=0, failed=[])

    monkeypatch.setattr(runner, "run_study", fake_run_study)  # study_cmd imports it when run
    argv = ["run", "mnist-pairs", "--out", str(tmp_path), "--no-report", "--group-seeds", "on", "--group-size", "4"]
    assert main(argv) == 0
    assert (seen["group_seeds"], seen["group_size"]) == ("on", 4)
    assert main([*argv[:-1], "0"]) == 2
    assert "--group-size" in capsys.readouterr().err
