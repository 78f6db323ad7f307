"""Weighting methods: every registered method satisfies the interface; fixed weights golden values."""

from __future__ import annotations

import pytest
import torch

from mtlab.weighting import create_weighting, registered_weightings


@pytest.mark.parametrize("name", registered_weightings())
def test_every_method_returns_a_differentiable_scalar(name):
    weighting = create_weighting(name, ["a", "b"])
    p = torch.ones(2, requires_grad=True)
    total, extras = weighting.combine({"a": p[0] * 2, "b": p[1] * 3})
    assert total.shape == ()
    assert isinstance(extras, dict)
    total.backward()
    assert p.grad is not None
    weighting.after_step()
    assert all(isinstance(q, torch.nn.Parameter) for q in weighting.parameters())


def test_fixed_weights_golden():
    weighting = create_weighting("fixed", ["item", "group"], weights={"item": 0.7})
    total, _ = weighting.combine({"item": torch.tensor(2.0), "group": torch.tensor(4.0)})
    assert total.item() == pytest.approx(0.7 * 2.0 + 1.0 * 4.0)


def test_zero_weight_task_gets_no_gradient_even_when_its_loss_is_nan():
    weighting = create_weighting("fixed", ["a", "b"], weights={"b": 0.0})
    total, _ = weighting.combine({"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))})
    assert total.item() == 1.0


def test_unknown_method_and_task():
    with pytest.raises(KeyError, match="unknown weighting"):
        create_weighting("famo", ["a"])
    with pytest.raises(ValueError, match="unknown tasks"):
        create_weighting("fixed", ["a"], weights={"z": 1.0})
