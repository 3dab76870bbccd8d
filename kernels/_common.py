"""Validation and allocation shared by every launcher in :mod:`convbench.kernels`.

Launchers validate tensors here before any kernel is launched, so a bad call fails with a
``TypeError``/``ValueError`` naming the argument instead of deep inside Triton.  Outputs are
allocated through :func:`empty_output`, which tests switch to NaN-filled buffers
(:data:`POISON_OUTPUTS`) so that an element a kernel forgot to write cannot pass.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from convbench.runtime import ENV, interpreter_overflow_checks_requested, interpreter_requested

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INPUT_PRECISIONS = ("ieee", "tf32")

#: Tests set this to True: outputs start as NaN instead of uninitialised memory.
POISON_OUTPUTS = False


#: whether the kernels run in the CPU interpreter: decided once, when this package is imported
#: (Triton reads ``TRITON_INTERPRET`` when a kernel is defined, so a later change cannot take effect)
INTERPRETER_MODE: bool = interpreter_requested()


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1`` at import).

    Raises ``RuntimeError`` when ``TRITON_INTERPRET`` was changed after :mod:`convbench.kernels`
    was imported: the kernels were defined in the other mode, and the interpreter-only paths
    (bf16 upcasts, CPU tensors) must not switch on or off under them."""
    if interpreter_requested() != INTERPRETER_MODE:
        raise RuntimeError(
            f"TRITON_INTERPRET changed after convbench.kernels was imported (kernels were defined "
            f"{'in the interpreter' if INTERPRETER_MODE else 'compiled'}, TRITON_INTERPRET is now "
            f"{os.environ.get(ENV)!r}): set it before the first import, or use a new process")
    return INTERPRETER_MODE


def _interpreter_builder():
    """Triton's interpreter builder when its options have both switches below, else None."""
    try:
        from triton.runtime import interpreter  # lazily: only the interpreter's builder is switched
    except ImportError:
        return None
    builder = getattr(interpreter, "interpreter_builder", None)
    fields = getattr(getattr(builder, "options", None), "__dataclass_fields__", ())
    return builder if {"sanitize_overflow", "debug"} <= set(fields) else None


def set_interpreter_overflow_checks(enabled: bool) -> bool:
    """Switch the Triton interpreter's int32 overflow checks on or off.

    Triton 3.6's interpreter recomputes every int32 add, sub and mul in int64 for its overflow
    sanitizer and then drops the verdict, because its device asserts are off
    (``InterpreterOptions.debug`` is False): about half of the interpreter's time, for nothing.
    convbench turns the sanitizer off; ``enabled=True`` (``CONVBENCH_INTERPRET_OVERFLOW_CHECKS=1``)
    turns it on *with* device asserts, so that an overflow raises.  Returns whether this Triton
    has the switch (``interpreter_builder.options``)."""
    builder = _interpreter_builder()
    if builder is None:
        return False
    builder.options = dataclasses.replace(builder.options, sanitize_overflow=bool(enabled), debug=bool(enabled))
    return True


def interpreter_overflow_checks() -> bool | None:
    """Whether the interpreter checks int32 overflow (None: not interpreting, or no such switch)."""
    builder = _interpreter_builder() if INTERPRETER_MODE else None
    if builder is None:
        return None
    return bool(builder.options.sanitize_overflow and builder.options.debug)


if INTERPRETER_MODE:
    set_interpreter_overflow_checks(interpreter_overflow_checks_requested())


def check_tensor(t, name: str, *, ndim: int | None = None, dtypes=FLOAT_DTYPES) -> None:
    """Type, dtype, rank and device of one tensor argument."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; expected one of {allowed}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and interpreting():
        return
    raise ValueError(
        f"{name} is on device {t.device}; Triton kernels need a CUDA tensor "
        "(or a CPU tensor with TRITON_INTERPRET=1 set before importing convbench.kernels)"
    )


def check_same(ref: torch.Tensor, ref_name: str, other, name: str) -> None:
    """``other`` must match ``ref`` in dtype and device (for weight, bias, statistics)."""
    if other is None:
        return
    if other.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {other.dtype} but {ref_name} has {ref.dtype}")
    if other.device != ref.device:
        raise ValueError(f"{name} is on {other.device} but {ref_name} is on {ref.device}")


def check_vector(t, name: str, length: int, like: torch.Tensor, dtypes=FLOAT_DTYPES) -> None:
    """An optional 1-D per-channel parameter (bias, affine weight, running statistic)."""
    if t is None:
        return
    check_tensor(t, name, ndim=1, dtypes=dtypes)
    if t.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},), got {tuple(t.shape)}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but input is on {like.device}")


def check_launch(x, weight, bias, geom, input_precision: str) -> None:
    """What an algorithm launcher checks when called directly with a geometry: tensor types,
    shapes against ``geom.input_shape``/``geom.weight_shape``, bias length, precision."""
    check_tensor(x, "input", ndim=4)
    check_tensor(weight, "weight", ndim=4)
    check_same(x, "input", weight, "weight")
    if tuple(x.shape) != geom.input_shape:
        raise ValueError(f"input shape {tuple(x.shape)} does not match geometry {geom} (expects {geom.input_shape})")
    if tuple(weight.shape) != geom.weight_shape:
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match geometry {geom} "
                         f"(expects {geom.weight_shape})")
    check_vector(bias, "bias", geom.k, x)
    check_same(x, "input", bias, "bias")
    check_input_precision(input_precision)


def check_input_precision(value: str) -> str:
    if value not in INPUT_PRECISIONS:
        raise ValueError(f"input_precision must be one of {INPUT_PRECISIONS}, got {value!r}")
    return value


def is_channels_last(t: torch.Tensor) -> bool:
    """True for a 4-D tensor stored NHWC, decided as torch decides a convolution's output format:
    a tensor dense in both formats (C == 1, or H == W == 1) counts as channels_last exactly when
    its strides are the channels_last ones and not the NCHW ones."""
    if t.dim() != 4 or not t.is_contiguous(memory_format=torch.channels_last):
        return False
    if not t.is_contiguous():
        return True
    n, c, h, w = t.shape
    return t.stride() == (h * w * c, 1, w * c, c) and t.stride() != (c * h * w, h * w, w, 1)


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if is_channels_last(t) else torch.contiguous_format


def empty_output(shape, like: torch.Tensor, *, dtype=None, memory_format=None) -> torch.Tensor:
    """Output buffer on ``like``'s device, in ``like``'s memory format unless told otherwise."""
    dtype = like.dtype if dtype is None else dtype
    if memory_format is None:
        memory_format = memory_format_of(like) if len(shape) == 4 else torch.contiguous_format
    if len(shape) != 4:
        memory_format = torch.contiguous_format
    out = torch.empty(shape, dtype=dtype, device=like.device, memory_format=memory_format)
    if POISON_OUTPUTS:
        out.fill_(float("nan") if out.is_floating_point() else -(2**31))
    return out


def needs_int64(*tensors: torch.Tensor) -> bool:
    """Whether element offsets into any of these tensors can pass 2**31 - 1."""
    return any(t is not None and t.numel() >= 2**31 - 1 for t in tensors)


def needs_grad(*tensors) -> bool:
    """Whether a launcher must go through its ``torch.autograd.Function``: grad mode is on and
    some tensor argument requires a gradient (None and non-tensors are ignored)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)
