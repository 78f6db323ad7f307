"""``mtlab.lightning`` with the real Lightning package, on the CPU (issue 28, section 2): a ``LightningModule``
returning task losses trains with every registered method, its hooks run by the mixin; it equals the plain loop of
``mtlab.Weighting`` on the same batches, logs the weights, and resumes from Lightning's own checkpoints exactly."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
import warnings
from pathlib import Path

import lightning  # the test extra installs it: these tests run with the real package
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from mtlab.errors import MtlabError
from mtlab.lightning import MTLModule
from mtlab.weighting import registered_methods
from test_own_loop import TwoHeads, assert_same_tensors, batches, fresh, generic_loop, make, method_state, task_losses

ROOT = Path(__file__).resolve().parents[1]
EPOCH = 3  # batches in an epoch: make()'s steps_per_epoch


@pytest.fixture(autouse=True)
def quiet():
    """Lightning's start-up lines and its warnings about a tiny CPU run (no workers, no logger) are not results."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Batches(Dataset):
    """Ready batches, one an item (``DataLoader(batch_size=None)`` hands them over as they are)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


class Pair(MTLModule):
    """test_own_loop's two-head net as a Lightning module: the same weighting (make()), optimiser and meta batches
    as its generic_loop."""

    def __init__(self, name: str, data, seed: int = 0, method_parameters: bool = True, build: bool = True):
        super().__init__()
        torch.manual_seed(seed)
        self.model = TwoHeads()
        if build:
            self.weighting = make(name, self.model, seed)
        self.data, self.method_parameters = data, method_parameters

    def task_losses(self, batch):
        return task_losses(self.model, batch)

    def configure_optimizers(self):
        extra = self.weighting.parameters() if self.method_parameters else []
        return torch.optim.Adam([*self.model.parameters(), *extra], lr=0.01)

    def meta_batch(self, batch, batch_idx):
        i = self.trainer.current_epoch * EPOCH + batch_idx
        return self.data[len(self.data) - 1 - i]  # generic_loop's meta batch


class NoMeta(Pair):
    meta_batch = MTLModule.meta_batch  # none defined


def trainer(tmp_path=None, **kwargs) -> lightning.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
               "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
               "default_root_dir": tmp_path, **kwargs}
    return lightning.Trainer(**options)


def loader(data):
    """The first EPOCH batches, in order, every epoch (generic_loop's data are 3 epochs of distinct batches; here
    each epoch sees the same three, and the plain loop below is given the same stream)."""
    return DataLoader(Batches(data[:EPOCH]), batch_size=None)


def stream(data, epochs: int):
    return [data[i % EPOCH] for i in range(epochs * EPOCH)]


# ---------------------------------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", registered_methods())
def test_every_method_trains_in_lightning_like_the_plain_loop(name):
    """Three epochs of three batches through Lightning equal the plain loop of test_own_loop (every hook run) on the
    same batches and meta batches: parameters and method state to 1e-6, the same weights - for every registered
    method, the hook ones (famo, dwa, stch, gradnorm, modo, sdmgrad, auto_lambda, uncertainty) included."""
    data = batches(EPOCH * 3)
    plain = stream(data, 3)
    model, weighting, optimizer = fresh(name)
    generic_loop(weighting, model, optimizer, plain)

    module = Pair(name, plain)
    t = trainer(max_epochs=3)
    t.fit(module, loader(data))
    assert module.weighting.steps == 9
    assert_same_tensors(model.state_dict(), module.model.state_dict(), tolerance=1e-6)
    assert_same_tensors(method_state(weighting), method_state(module.weighting), tolerance=1e-6)
    for task, w in weighting.weights().items():
        assert module.weighting.weights()[task] == pytest.approx(w, abs=1e-6)
    logged = t.callback_metrics
    for task, w in module.weighting.weights().items():
        assert float(logged[f"weight/{task}"]) == pytest.approx(w, abs=1e-6)
        assert torch.isfinite(logged[f"loss/{task}"])
    assert float(logged["diagnostics/steps"]) == 9


def test_dwa_weights_move_and_are_logged_every_step(tmp_path):
    """DWA's end-of-epoch hook runs inside Lightning: its weights leave 1.0 after two epochs, and each step's weights
    reach the logger (a CSV logger, read back)."""
    from lightning.pytorch.loggers import CSVLogger

    data = batches(EPOCH)
    module = Pair("dwa", stream(data, 3))
    t = trainer(max_epochs=3, logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=1)
    t.fit(module, loader(data))
    assert any(abs(w - 1.0) > 1e-6 for w in module.weighting.weights().values())
    lines = (Path(t.logger.log_dir) / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"weight/a", "weight/b", "loss/a", "diagnostics/skipped_steps"} <= set(header)
    assert len(lines) - 1 == 9


# ---------------------------------------------------------------------------------------------- resume


class StatefulBatches:
    """The batches of an epoch with the state Lightning saves in a checkpoint (how many of this pass were drawn), so
    that a run resumed mid-epoch draws the rest of that epoch (a plain DataLoader starts the epoch again)."""

    def __init__(self, data):
        self.data, self.drawn, self.skip = data, 0, 0

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        start, self.skip = self.skip, 0
        for i in range(start, len(self.data)):
            self.drawn = i + 1
            yield self.data[i]

    def state_dict(self):
        return {"drawn": self.drawn}

    def load_state_dict(self, state):
        self.skip = state["drawn"] % len(self.data)


@pytest.mark.parametrize("name", ["famo", "dwa", "gradnorm", "pcgrad", "auto_lambda", "uncertainty", "modo"])
@pytest.mark.parametrize("stop", [EPOCH, EPOCH + 1, 2 * EPOCH])
def test_checkpoint_resumes_exactly(name, stop, tmp_path):
    """A Lightning checkpoint (ModelCheckpoint every ``stop`` steps: after an epoch's last batch, mid-epoch) holds
    the model, the optimiser and, through on_save_checkpoint, the method's state and generator; a module built with
    another seed and resumed from it with ckpt_path= continues to the same parameters, method state and weights as
    the uninterrupted run of three epochs."""
    data = batches(EPOCH)
    plain = stream(data, 3)
    whole = Pair(name, plain)
    every = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=stop, save_top_k=-1, filename="{step}")
    trainer(max_epochs=3, enable_checkpointing=True, callbacks=[every]).fit(whole, StatefulBatches(data))
    path = tmp_path / f"step={stop}.ckpt"
    assert torch.load(path, weights_only=False)["mtlab_weighting"]["method"] == name

    resumed = Pair(name, plain, seed=5)
    trainer(max_epochs=3).fit(resumed, StatefulBatches(data), ckpt_path=path)
    assert resumed.weighting.steps == 9
    assert_same_tensors(whole.model.state_dict(), resumed.model.state_dict())
    assert_same_tensors(method_state(whole.weighting), method_state(resumed.weighting))
    assert whole.weighting.weights() == resumed.weighting.weights()


def test_checkpoint_of_another_method_is_refused(tmp_path):
    data = batches(EPOCH)
    t = trainer(max_epochs=1)
    t.fit(Pair("famo", data), loader(data))
    t.save_checkpoint(tmp_path / "famo.ckpt")
    with pytest.raises(MtlabError, match=r"the checkpoint's weighting is famo .* this module trains dwa"):
        trainer(max_epochs=2).fit(Pair("dwa", data), loader(data), ckpt_path=tmp_path / "famo.ckpt")


# ------------------------------------------------------------------------------ the run's length from Lightning


class Built(Pair):
    """The weighting built by configure_weighting once Lightning knows the batches in an epoch and the epochs."""

    def __init__(self, name: str, data):
        super().__init__(name, data, build=False)
        self.name, self.seen = name, None

    def configure_weighting(self, steps_per_epoch, epochs):
        self.seen = (steps_per_epoch, epochs)
        return make(self.name, self.model)


@pytest.mark.parametrize(("limits", "expected"), [({"max_epochs": 2}, (3, 2)), ({"max_steps": 7}, (3, 3)),
                                                  ({"max_epochs": 5, "max_steps": 4}, (3, 2))])
def test_configure_weighting_gets_the_runs_length(limits, expected):
    data = batches(EPOCH)
    module = Built("dwa", stream(data, 3))
    trainer(**limits).fit(module, loader(data))
    assert module.seen == expected


def test_configure_weighting_resumes_from_a_checkpoint(tmp_path):
    """A checkpoint is read before configure_optimizers builds the method: its state waits and is loaded then."""
    data = batches(EPOCH)
    whole = Built("famo", stream(data, 3))
    trainer(max_epochs=2).fit(whole, loader(data))
    first = Built("famo", stream(data, 3))
    t = trainer(max_epochs=1)
    t.fit(first, loader(data))
    t.save_checkpoint(tmp_path / "k.ckpt")
    resumed = Built("famo", stream(data, 3))
    trainer(max_epochs=2).fit(resumed, loader(data), ckpt_path=tmp_path / "k.ckpt")
    assert_same_tensors(method_state(whole.weighting), method_state(resumed.weighting))
    assert_same_tensors(whole.model.state_dict(), resumed.model.state_dict())


# ---------------------------------------------------------------------------------- precision, schedules


class Overflowing(Pair):
    """The task losses of the second step are infinite (an fp16 overflow), for the gradient and in every half."""

    def task_losses(self, batch):
        losses = super().task_losses(batch)
        if self.weighting.steps == 1 and torch.is_grad_enabled():
            losses = {t: v * math.inf for t, v in losses.items()}
        return losses


@pytest.mark.parametrize("name", ["upgrad", "modo", "uncertainty", "famo"])
def test_an_overflow_under_16_mixed_is_skipped_and_lowers_the_scale(name):
    """16-bit mixed precision with a GradScaler (on the CPU here): the losses the object differentiates are scaled;
    the overflowing step is skipped and counted, the parameters stay finite, and the non-finite gradient the object
    writes (gradient and loss methods alike) makes the scaler skip the optimiser step and halve its scale."""
    from lightning.pytorch.plugins import MixedPrecision

    data = batches(EPOCH)
    module = Overflowing(name, stream(data, 3))
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))
    trainer(max_epochs=1, plugins=[plugin]).fit(module, loader(data))
    assert module.weighting.diagnostics()["skipped_steps"] == 1
    assert plugin.scaler.get_scale() == 512.0
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())


class Scheduled(Pair):
    def __init__(self, interval: str):
        super().__init__("upgrad", batches(EPOCH))
        self.interval = interval

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.model.parameters(), lr=1.0)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": self.interval}}


@pytest.mark.parametrize(("interval", "halvings"), [("step", 2 * EPOCH), ("epoch", 2)])
def test_schedulers_step_by_their_interval(interval, halvings):
    module = Scheduled(interval)
    t = trainer(max_epochs=2)
    t.fit(module, loader(module.data))
    assert t.optimizers[0].param_groups[0]["lr"] == 0.5**halvings


# ------------------------------------------------------------------------------------------------- refused


def test_auto_lambda_without_a_meta_batch_is_refused_in_one_line():
    data = batches(EPOCH)
    with pytest.raises(MtlabError, match=r"auto_lambda looks ahead on a meta batch .* define meta_batch\(self, "):
        trainer(max_epochs=1).fit(NoMeta("auto_lambda", data), loader(data))


def test_method_parameters_left_out_of_the_optimiser_are_refused():
    data = batches(EPOCH)
    with pytest.raises(MtlabError, match=r"uncertainty learns parameters of its own: give self.weighting.parameters"):
        trainer(max_epochs=1).fit(Pair("uncertainty", data, method_parameters=False), loader(data))


def test_a_module_without_a_method_is_told_how_to_give_one():
    class Missing(MTLModule):
        def configure_optimizers(self):
            return torch.optim.SGD(self.weighting.parameters(), lr=0.1)

    with pytest.raises(MtlabError, match=r"set self.weighting = mtlab.Weighting\(...\) in __init__, or define "):
        trainer(max_epochs=1).fit(Missing(), loader(batches(EPOCH)))


def test_missing_lightning_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "mtlab.lightning")
    message = r"^mtlab.lightning needs the lightning package: pip install 'mtlab\[lightning\]'$"
    with pytest.raises(MtlabError, match=message):
        importlib.import_module("mtlab.lightning")


# ------------------------------------------------------------------------------------------------- example


def load_example():
    spec = importlib.util.spec_from_file_location("lightning_loop_example", ROOT / "examples" / "lightning_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_for_every_method(capsys):
    """examples/lightning_loop.py trains two steps with each registered method (in this process, one after the
    other) and prints its final weights."""
    example = load_example()
    for name in registered_methods():
        weights = example.main(["--method", name, "--steps", "2", "--batch-size", "16"])
        assert set(weights) == {"item", "group"}, name
        assert f"{name} after 2 steps: item" in capsys.readouterr().out
