"""Random operands shared by the kernel tests: a fresh seed per test (printed in failure messages,
so a failure can be replayed) and operands drawn from it, rounded to the kernel's dtype."""

import random

import torch


def fresh_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def operand(shape, dtype, device, seed, layout="nchw"):
    """A fresh random operand, rounded to ``dtype`` (the values the kernel and reference share)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g).to(dtype).to(device)
    return t.to(memory_format=torch.channels_last) if layout == "channels_last" else t


def assert_exact_signatures(specs) -> None:
    """Static specs name each kernel once and describe exactly its parameters (constexprs too)."""
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for s in specs:
        fn = getattr(s.fn, "fn", s.fn)
        args = list(fn.__code__.co_varnames[:fn.__code__.co_argcount])
        assert list(s.signature) == args, s.name
        assert {k for k, v in s.signature.items() if v == "constexpr"} == set(s.constexprs), s.name
