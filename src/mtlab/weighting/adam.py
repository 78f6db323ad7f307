"""A batched Adam step on a weighting method's own state tensors (Kingma & Ba, ICLR 2015), for methods whose
weights are learned outside the run's optimiser (FAMO's logits, Auto-Lambda's task weights).

Elementwise like ``torch.optim.Adam``, so each replica's row of a (K, T) tensor moves as a solo run's would.
"""

from __future__ import annotations

from torch import Tensor

BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_step(value: Tensor, grad: Tensor, moment: Tensor, second_moment: Tensor, steps: Tensor, lr: float) -> None:
    """In place: ``value`` (K, T) -= lr * m_hat / (sqrt(v_hat) + eps); ``steps`` (K,) counts each replica's steps."""
    b1, b2 = BETAS
    steps += 1
    moment.mul_(b1).add_((1 - b1) * grad)
    second_moment.mul_(b2).add_((1 - b2) * grad * grad)
    m_hat = moment / (1 - b1 ** steps[:, None])
    v_hat = second_moment / (1 - b2 ** steps[:, None])
    value.sub_(lr * m_hat / (v_hat.sqrt() + EPS))
