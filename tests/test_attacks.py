"""convbench.attacks: FGSM and PGD on any torch model, and ours against torch on the same network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convbench import attacks, models
from convbench.suites.measure.accuracy import check_steps, tolerance

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _torch_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)).to(DEV)


def _data(n=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g).to(DEV), torch.randint(0, 4, (n,), generator=g).to(DEV)


def test_fgsm_is_one_signed_gradient_step_in_the_ball():
    model = _torch_model()
    x, y = _data()
    adv = attacks.fgsm(model, x, y, 0.1)
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    assert torch.equal(adv, expected)
    assert (adv - x).abs().max() <= 0.1 + 1e-7 and adv.min() >= 0 and adv.max() <= 1
    assert not adv.requires_grad
    assert all(p.grad is None and p.requires_grad for p in model.parameters()), "parameters must be untouched"


def test_pgd_projects_clamps_and_is_reproducible():
    model = _torch_model()
    x, y = _data()
    a = attacks.pgd(model, x, y, 0.05, 0.02, 7, generator=torch.Generator(device=DEV).manual_seed(5))
    b = attacks.pgd(model, x, y, 0.05, 0.02, 7, generator=torch.Generator(device=DEV).manual_seed(5))
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 0.05 + 1e-7 and a.min() >= 0 and a.max() <= 1
    loss = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        assert loss(model(a), y) >= loss(model(x), y), "PGD should not lower the loss it ascends"
    start = attacks.pgd(model, x, y, 0.05, 0.0, 1, start=x + 1.0)  # alpha 0: the projected start
    assert torch.allclose(start, (x + 0.05).clamp(0, 1))
    plain = attacks.pgd(model, x, y, 0.05, 0.01, 2, random_start=False, clamp=None, loss=loss)
    assert (plain - x).abs().max() <= 0.05 + 1e-7


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), "eps"),
    (lambda m, x, y: attacks.fgsm(m, x, y[:3], 0.1), "batch"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.01, 0), "steps"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, -1.0, 3), "alpha"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.01, 3, clamp=(1.0, 0.0)), "clamp"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.01, 3, start=x[:2]), "start"),
    (lambda m, x, y: attacks.fgsm(m, x, y, float("nan")), "eps"),
])
def test_bad_arguments_are_value_errors(call, match):
    model = _torch_model()
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        call(model, x, y)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_ours_and_torch_produce_the_same_adversarial_examples(attack):
    """The same small_cnn, weights and inputs through convbench's kernels and through torch:
    the adversarial examples agree within the forward error, but for elements whose gradient
    sign flipped (a tie at rounding level), at most accuracy.MAX_FLIPPED of them."""
    torch.manual_seed(2)
    ours = models.small_cnn(1, 10, 8).to(DEV).eval()
    theirs = models.small_cnn(1, 10, 8, algorithm="torch").to(DEV).eval()
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 1, 8, 8, generator=g).to(DEV)
    y = torch.randint(0, 10, (8,), generator=g).to(DEV)
    if attack == "fgsm":
        a, b = attacks.fgsm(ours, x, y, 0.2), attacks.fgsm(theirs, x, y, 0.2)
        steps = 1
    else:
        start = torch.rand(x.shape, generator=g).to(DEV)
        a = attacks.pgd(ours, x, y, 0.2, 0.05, 5, start=start)
        b = attacks.pgd(theirs, x, y, 0.2, 0.05, 5, start=start)
        steps = 5
    result = check_steps(a, b.double().cpu().numpy(), tolerance(torch.float32, steps), attack)
    assert result.passed, result.message
    assert (a - x).abs().max() <= 0.2 + 1e-6


def test_small_cnn_checks_its_arguments():
    with pytest.raises(ValueError, match="width"):
        models.small_cnn(1, 10, 0)
