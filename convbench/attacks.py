"""L-infinity adversarial attacks: FGSM and PGD, for any torch model.

FGSM (Goodfellow et al., "Explaining and Harnessing Adversarial Examples", 2015) takes one step
of size ``eps`` along the sign of the input gradient of the loss.  PGD (Madry et al., "Towards
Deep Learning Models Resistant to Adversarial Attacks", 2018) takes ``steps`` steps of size
``alpha`` from a random start in the eps-ball, projecting back onto the ball (and into the
valid input range ``clamp``) after each.

Both are model-agnostic: a model converted with :func:`convbench.nn.convert` runs its forward
and its input gradient on convbench's kernels, the same model with ``algorithm="torch"`` on
cuDNN.  The model's mode (train/eval) is left as given.  Its parameters are frozen for the
duration of the attack (``requires_grad`` restored afterwards), so neither side computes weight
gradients nobody asked for and no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

__all__ = ["fgsm", "pgd"]


def _check(x, y, eps, clamp) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if clamp is not None:
        if len(clamp) != 2 or not clamp[0] < clamp[1]:
            raise ValueError(f"clamp must be None or (low, high) with low < high, got {clamp!r}")


@contextlib.contextmanager
def _frozen(model: torch.nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _input_grad(model, x_adv, y, loss) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss(model(x_adv), y)
        (grad,) = torch.autograd.grad(value, x_adv)
    return grad


def _project(x_adv, x, eps, clamp) -> torch.Tensor:
    x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    return x_adv.clamp(*clamp) if clamp is not None else x_adv


def fgsm(model, x, y, eps, *, loss=None, clamp=(0.0, 1.0)) -> torch.Tensor:
    """One signed-gradient step: ``clamp(x + eps * sign(d loss / d x))``.  ``loss(output, y)``
    defaults to cross entropy.  Returns a detached tensor like ``x``."""
    _check(x, y, eps, clamp)
    loss = loss or F.cross_entropy
    x = x.detach()
    with _frozen(model):
        grad = _input_grad(model, x, y, loss)
    return _project(x + eps * grad.sign(), x, eps, clamp).detach()


def pgd(model, x, y, eps, alpha, steps, *, random_start=True, loss=None, clamp=(0.0, 1.0),
        generator: torch.Generator | None = None, start: torch.Tensor | None = None) -> torch.Tensor:
    """Projected gradient descent in the L-infinity ball of radius ``eps`` around ``x``:
    ``steps`` signed-gradient steps of size ``alpha``, each projected onto the ball and into
    ``clamp``; ``random_start`` draws the start uniformly from the ball (from ``generator``).
    ``start`` (shaped like ``x``) gives the starting point instead (projected onto the ball): the
    same start for two implementations being compared."""
    _check(x, y, eps, clamp)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    loss = loss or F.cross_entropy
    x = x.detach()
    x_adv = x
    if start is not None:
        if not isinstance(start, torch.Tensor) or start.shape != x.shape:
            raise ValueError(f"start must be a tensor shaped like x {tuple(x.shape)}, got "
                             f"{tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__}")
        x_adv = _project(start.detach().to(x.dtype), x, eps, clamp)
    elif random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device if generator is None
                           else generator.device).to(device=x.device, dtype=x.dtype)
        x_adv = _project(x + (2 * noise - 1) * eps, x, eps, clamp)
    with _frozen(model):
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y, loss)
            x_adv = _project(x_adv + alpha * grad.sign(), x, eps, clamp).detach()
    return x_adv
