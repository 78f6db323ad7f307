"""Precision, memory layout and compilation options: they train, keep accuracy, and fall back with a message."""

from __future__ import annotations

import pytest
import torch

from mtlab.config import parse_config
from mtlab.train.fit import fit
from mtlab.train.precision import autocast_for
from test_fit import CLASSES, CPU, TASKS, toy_splits


def cnn_config(**train):
    return parse_config(
        {
            "data": {"dataset": "fashion-mnist-sample"},
            "model": {
                "trunk": {"type": "cnn", "conv": [{"filters": 8, "pool": 2, "batch_norm": True}]},
                "head": {"widths": [16]},
            },
            "optim": {"lr": 0.01},
            "train": {"epochs": 4, "batch_size": 32, **train},
        }
    )


def run(config):
    torch.manual_seed(0)
    from mtlab.models import build_model

    model = build_model(config, TASKS, (1, 8, 8))
    return fit(model, toy_splits(), config, tasks=CLASSES, device=CPU)


def test_bf16_on_cpu_learns_as_well_as_fp32():
    fp32 = run(cnn_config())
    bf16 = run(cnn_config(precision="bf16"))
    assert bf16.history[-1]["train.loss"] < bf16.history[0]["train.loss"]
    assert bf16.test["test.item.acc"] == pytest.approx(fp32.test["test.item.acc"], abs=0.1)
    assert bf16.history[0]["train.loss"] != fp32.history[0]["train.loss"]  # it really ran in bf16


def test_channels_last_matches_the_default_layout():
    default = run(cnn_config())
    nhwc = run(cnn_config(channels_last=True))
    assert nhwc.test["test.item.acc"] == pytest.approx(default.test["test.item.acc"], abs=0.03)
    assert nhwc.history[-1]["train.loss"] == pytest.approx(default.history[-1]["train.loss"], rel=1e-3)


def test_fp16_without_cuda_falls_back_to_fp32_with_a_message():
    with pytest.warns(RuntimeWarning, match="fp16 is not supported on cpu; training in fp32"):
        context, scaler = autocast_for("fp16", CPU)
    assert scaler is None
    with context():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_a_failing_compile_falls_back_to_eager_with_a_message(monkeypatch):
    def broken_compile(model):
        def compiled(x):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler.*eager"):
        result = run(cnn_config(compile=True, epochs=1))
    assert result.history[0]["train.loss"] > 0


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_arithmetic_warns_that_it_is_slow(native, monkeypatch, recwarn):
    import mtlab.train.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    context, scaler = autocast_for("bf16", CPU)
    slow = [w for w in recwarn if "emulated" in str(w.message)]
    assert len(slow) == (0 if native else 1)
    with context():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16  # bf16 all the same
    assert scaler is None
