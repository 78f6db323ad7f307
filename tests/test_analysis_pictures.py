"""Pictures of what a network learned (``mtlab analyze filters|features|maximize|dream``) on tiny trained runs."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, require_shared_data
from mtlab.analysis import dream, features, filters, maximize
from mtlab.analysis.loaded import (
    choose_trunk,
    conv_layers,
    load_trained_run,
    pick_inputs,
    pick_layers,
    trunk_input_shape,
    trunk_inputs,
)
from mtlab.analysis.pictures import displayable, draw_grid, shared_scale
from mtlab.cli.analyze import dream as dream_cli
from mtlab.cli.analyze import features as features_cli
from mtlab.cli.analyze import filters as filters_cli
from mtlab.cli.analyze import maximize as maximize_cli
from mtlab.config import parse_config
from mtlab.errors import MtlabError
from mtlab.train.run import train_run
from mtlab.train.rundir import load_checkpoint

CNN = {"type": "cnn", "conv": [{"filters": 4, "kernel": 3, "pool": 2}, {"filters": 6, "kernel": 3, "pool": 2}]}
TINY = {"epochs": 1, "batch_size": 50, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tensors are tiny: one CPU thread is faster than several, and immune to a busy machine's contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(root: Path, name: str, config: dict) -> Path:
    train_run(parse_config({"name": name, **config}), root / name)
    return root / name


@pytest.fixture(scope="module")
def runs(built_once):
    """Tiny runs, trained once for the session: a two-task CNN on the embedded sample, an MNIST CNN, a siamese pair
    CNN, an MLP."""
    return built_once("test_analysis_pictures-runs", _make_runs)


def _make_runs(root: Path) -> dict[str, Path]:
    sample = {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 60}
    made = {
        "fashion": _train(root, "fashion", {"data": sample, "model": {"trunk": {**CNN, "dense": [16]}}, "train": TINY}),
        "mlp": _train(root, "mlp", {"data": sample, "model": {"trunk": {"type": "mlp", "widths": [8]}}, "train": TINY}),
    }
    if SHARED_DATA.is_dir():
        made["mnist"] = _train(
            root,
            "mnist",
            {
                "data": {"dataset": "mnist", "train_subset": 300, "test_subset": 100},
                "model": {"trunk": {**CNN, "dense": [16]}},
                "train": TINY,
            },
        )
        made["pairs"] = _train(
            root,
            "pairs",
            {
                "data": {"dataset": "mnist-pairs", "pairs": 200, "val_fraction": 0.0},
                "model": {"kind": "pairs", "weight_sharing": True, "branch": CNN},
                "train": TINY,
            },
        )
    return made


def _needs(runs, name: str):
    if name not in runs:
        require_shared_data()
    return runs[name]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlab analyze")
    subparsers = parser.add_subparsers(required=True)
    for module in (filters_cli, features_cli, maximize_cli, dream_cli):
        module.add_cli(subparsers)
    return parser


def _analyze(argv: list[str]) -> int:
    """What ``mtlab analyze ...`` does with its arguments: parse them, run the command's ``func``."""
    args = _parser().parse_args(argv)
    return args.func(args)


def _user_error(argv: list[str], match: str) -> None:
    """The command fails with a one-line :class:`MtlabError` (the CLI prints it and exits 2)."""
    with pytest.raises(MtlabError, match=match) as e:
        _analyze(argv)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ loading


def test_a_run_loads_in_eval_mode_with_its_weights(runs):
    run = load_trained_run(runs["fashion"])
    assert not run.model.training
    saved = load_checkpoint(runs["fashion"] / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in run.model.state_dict().items())
    assert list(run.tasks) == ["item", "group"]
    assert run.input_shape == (1, 28, 28)
    key, trunk = choose_trunk(run)
    assert key == "shared"
    assert [(c.index, c.name) for c in conv_layers(trunk)] == [(0, "conv.0.0"), (1, "conv.1.0")]


@pytest.mark.parametrize("remove", ["checkpoint.pt", "config.yaml", None])
def test_a_directory_that_is_not_a_finished_run_is_a_one_line_error(runs, tmp_path, remove):
    broken = tmp_path / "broken"
    if remove:
        shutil.copytree(runs["fashion"], broken)
        (broken / remove).unlink()
    with pytest.raises(MtlabError, match="not a finished run" if remove else "no such run directory") as e:
        load_trained_run(broken)
    assert "\n" not in str(e.value)


def test_user_errors_name_what_there_is(runs):
    run = load_trained_run(runs["fashion"])
    with pytest.raises(MtlabError, match=r"unknown task 'colour'.*\['item', 'group'\]"):
        run.task("colour")
    with pytest.raises(MtlabError, match="no trunk 'item'"):
        choose_trunk(run, "item")
    _, trunk = choose_trunk(run)
    with pytest.raises(MtlabError, match="conv layers 1-2"):
        pick_layers(run, "shared", trunk, ["3"])
    with pytest.raises(MtlabError, match="has classes"):
        pick_inputs(run, run.task("item"), [], ["Hat"])
    with pytest.raises(MtlabError, match="examples 0-59"):
        pick_inputs(run, run.task("item"), [60], [])
    mlp = load_trained_run(runs["mlp"])
    with pytest.raises(MtlabError, match=r"trunk 'shared' \(mlp\) has no convolution layers"):
        pick_layers(mlp, *choose_trunk(mlp), None)


@pytest.mark.parametrize("command", ["filters", "features", "maximize", "dream"])
def test_every_command_rejects_a_model_without_convolutions_and_an_unknown_task(runs, tmp_path, command):
    _user_error([command, "--run", str(runs["mlp"]), "--out", str(tmp_path / "a")], "no convolution layers")
    _user_error([command, "--run", str(runs["fashion"]), "--task", "colour", "--out", str(tmp_path)], "unknown task")
    _user_error([command, "--run", str(tmp_path / "nowhere")], "no such run directory")


def test_inputs_are_chosen_by_index_or_class_name_or_label(runs):
    run = load_trained_run(runs["fashion"])
    item = run.task("item")
    inputs = pick_inputs(run, item, [3], ["trouser", "9"])
    _, splits = run.splits()
    labels = splits.test.labels["item"]
    assert inputs.indices[0] == 3
    assert [int(labels[i]) for i in inputs.indices[1:]] == [1, 9]
    assert inputs.captions[1].endswith("(Trouser)")
    assert inputs.x.shape == (3, 1, 28, 28)
    assert torch.allclose(inputs.x[0], run.normalizer(splits.test.images[3:4])[0])


# ------------------------------------------------------------------------------------------- the pictures


def test_filters_give_one_panel_per_filter_and_every_channel_on_request(runs):
    run = load_trained_run(runs["fashion"])
    first, second = conv_layers(choose_trunk(run)[1])
    grid = filters.kernel_grid(first)
    assert [len(row) for row in grid.rows] == [4]
    assert grid.rows[0][0].shape == (1, 3, 3)
    grid = filters.kernel_grid(second)  # deeper: each filter's first input channel
    assert [len(row) for row in grid.rows] == [6]
    assert grid.weights.shape == (6, 1, 3, 3)
    np.testing.assert_array_equal(grid.weights[:, 0], second.module.weight.detach()[:, 0].numpy())
    grid = filters.kernel_grid(second, all_channels=True, limit=5)
    assert [len(row) for row in grid.rows] == [4] * 5
    assert grid.weights.shape == (5, 4, 3, 3)


def test_features_are_every_conv_output_at_its_resolution(runs):
    run = load_trained_run(runs["fashion"])
    _, trunk = choose_trunk(run)
    x = pick_inputs(run, run.task("item"), [0, 1], []).x
    maps = features.layer_outputs(trunk, x, conv_layers(trunk))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"conv.0.0": (2, 4, 28, 28), "conv.1.0": (2, 6, 14, 14)}
    first = conv_layers(trunk)[0].module
    assert torch.allclose(maps["conv.0.0"], first(x), atol=1e-6)


def test_maximisation_increases_each_filters_activation_and_is_seeded(runs):
    run = load_trained_run(runs["fashion"])
    _, trunk = choose_trunk(run)
    layer = conv_layers(trunk)[1]
    # Without penalties the ascent can only raise each filter's activation.
    plain = maximize.maximize_filters(trunk, layer, (1, 28, 28), range(6), maximize.AscentSettings(15, l2=0, tv=0))
    assert plain.images.shape == (6, 1, 28, 28)
    assert bool((plain.after > plain.before).all())
    # The reported objective is the filter's own mean leaky-rectified conv output.
    direct = torch.nn.functional.leaky_relu(layer.module(trunk.conv[0](plain.images)), 0.1).mean((2, 3)).diagonal()
    torch.testing.assert_close(plain.after, direct)
    # With the readability penalties it still rises (a filter silent after one epoch may only hold its level).
    settings = maximize.AscentSettings(steps=15)
    a = maximize.maximize_filters(trunk, layer, (1, 28, 28), range(6), settings, seed=1)
    assert a.after.mean() > a.before.mean()
    assert int((a.after > a.before).sum()) >= 4
    again = maximize.maximize_filters(trunk, layer, (1, 28, 28), range(6), settings, seed=1)
    assert torch.equal(a.images, again.images)
    other = maximize.maximize_filters(trunk, layer, (1, 28, 28), range(6), settings, seed=2)
    assert not torch.equal(a.images, other.images)


def test_class_maximisation_raises_each_logit_of_the_chosen_head(runs):
    run = load_trained_run(runs["fashion"])
    a = maximize.maximize_classes(run, "group", maximize.AscentSettings(steps=20))
    assert a.images.shape == (3, 1, 28, 28)
    assert bool((a.after > a.before).all())


def test_dream_changes_the_image_and_raises_the_layers_activation_norm(runs):
    run = load_trained_run(runs["fashion"])
    _, trunk = choose_trunk(run)
    x = pick_inputs(run, run.task("item"), [0, 1], []).x
    for layer in conv_layers(trunk):
        d = dream.dream(trunk, layer, x, dream.DreamSettings(steps=5), seed=0)
        assert d.images.shape == x.shape
        assert not torch.allclose(d.images, x)
        assert bool((d.after > d.before).all())
        assert torch.allclose(d.before, dream.activation_norm(trunk, layer, x))
    again = dream.dream(trunk, layer, x, dream.DreamSettings(steps=5), seed=0)
    assert torch.equal(d.images, again.images)


def test_an_octave_too_small_for_the_layer_is_a_user_error(runs):
    run = load_trained_run(runs["fashion"])
    _, trunk = choose_trunk(run)
    x = pick_inputs(run, run.task("item"), [0], []).x
    with pytest.raises(MtlabError, match="too small for conv 2"):
        dream.dream(trunk, conv_layers(trunk)[1], x, dream.DreamSettings(steps=1, octaves=2, octave_scale=20))


def test_a_siamese_branch_is_analysed_on_the_image_it_sees(runs):
    run = load_trained_run(_needs(runs, "pairs"))
    assert run.input_shape == (2, 14, 14)
    key, trunk = choose_trunk(run)
    assert key == "shared"
    assert trunk_input_shape(run, key) == (1, 14, 14)
    x = pick_inputs(run, run.task("leq"), [0, 1], []).x  # (2, 2, 14, 14)
    seen = trunk_inputs(run, key, x)
    assert torch.equal(seen, x[:, :1])  # the first digit of each pair
    a = maximize.maximize_classes(run, "leq", maximize.AscentSettings(steps=3))
    assert a.images.shape == (2, 2, 14, 14)
    d = dream.dream(trunk, conv_layers(trunk)[0], seen, dream.DreamSettings(steps=2))
    assert d.images.shape == (2, 1, 14, 14)


# ------------------------------------------------------------------------------------------------ drawing


def test_a_grid_shares_one_colour_scale():
    assert shared_scale([np.array([[-1.0, 0.5]]), np.array([[3.0]])], signed=True, cmap="RdBu_r").vmin == -3.0
    scale = shared_scale([np.array([[1.0, 2.0]]), np.array([[5.0]])], signed=False, cmap="gray")
    assert (scale.vmin, scale.vmax) == (1.0, 5.0)
    assert displayable(np.zeros((1, 4, 5))).shape == (4, 5)
    assert displayable(np.zeros((3, 4, 5))).shape == (4, 5, 3)
    assert displayable(np.zeros((2, 4, 5))).shape == (4, 10)
    fig = draw_grid([[np.zeros((4, 4))] * 3, [np.ones((4, 4))] * 20], title="t", row_labels=["a", "b"], wrap=8)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 23
    assert {im.get_clim() for im in images} == {(0.0, 1.0)}


# ---------------------------------------------------------------------------------------------- end to end


def test_every_command_writes_its_pictures_numbers_and_page(runs, capsys):
    run_dir = _needs(runs, "mnist")
    common = ["--run", str(run_dir)]
    assert _analyze(["filters", *common]) == 0
    assert _analyze(["features", *common, "--class", "2", "--class", "9"]) == 0
    assert _analyze(["maximize", *common, "--steps", "5", "--limit", "3", "--layer", "2", "--classes"]) == 0
    assert _analyze(["dream", *common, "--class", "2", "--steps", "2", "--octaves", "1", "--layer", "conv.0.0"]) == 0
    printed = capsys.readouterr().out
    expected = {
        "filters": {"layer1.png", "layer2.png", "kernels.npz", "filters.csv", "filters.json"},
        "features": {"inputs.png", "layer1.png", "layer2.png", "features.npz", "features.csv", "features.json"},
        "maximize": {"layer2.png", "classes-digit.png", "maximize.npz", "maximize.csv", "maximize.json"},
        "dream": {"dream.png", "dream.npz", "dream.csv", "dream.json"},
    }
    for command, files in expected.items():
        out = run_dir / "analysis" / command
        assert f"{command}: {out / 'report.html'}" in printed
        assert {p.name for p in out.iterdir()} == files | {"report.html", "report.md"}
        html = (out / "report.html").read_text()
        assert html.count("data:image/png;base64,") == sum(f.endswith(".png") for f in files)
        assert all((out / f).stat().st_size > 0 for f in files)

    with np.load(run_dir / "analysis" / "features" / "features.npz") as saved:
        assert saved["layer2"].shape == (2, 6, 14, 14)
    assert json.loads((run_dir / "analysis" / "features" / "features.json").read_text())["captions"][1].endswith("(9)")
    rows = (run_dir / "analysis" / "maximize" / "maximize.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 + 10  # header, 3 filters of layer 2, 10 digit classes
    with np.load(run_dir / "analysis" / "dream" / "dream.npz") as saved:
        assert saved["inputs"].shape == saved["layer1"].shape == (1, 1, 28, 28)


def test_pictures_are_deterministic(runs, tmp_path):
    run_dir = runs["fashion"]
    for out in ("a", "b"):
        _analyze(["maximize", "--run", str(run_dir), "--out", str(tmp_path / out), "--steps", "3", "--limit", "2"])
    for name in ("maximize.npz", "layer1.png", "layer2.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
