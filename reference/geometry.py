"""Problem descriptions (geometry) for convolution, pooling and normalization.

The lowest layer of convbench: NumPy references, Triton launchers, suites and reports all
describe a problem with these frozen dataclasses, so output sizes and argument validation are
written once.  Output-size rules are PyTorch's, exactly:

* convolution:  ``P = floor((H + pad_top + pad_bottom - d*(R-1) - 1) / s) + 1``
  with ``padding`` an int, a pair, ``"valid"`` (zero) or ``"same"`` (stride 1 only; for an even
  effective kernel the extra row/column goes to the bottom/right, as in PyTorch);
* transposed convolution: ``P = (H-1)*s - 2p + d*(R-1) + output_padding + 1``;
* pooling: ``floor`` or ``ceil`` of ``(H + 2p - d*(k-1) - 1)/s`` plus one, and with
  ``ceil_mode`` a last window that would start inside the right padding is dropped.

Invalid arguments raise ``ValueError`` naming the argument and its value.  This module imports
only the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

IntOrPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]


# --------------------------------------------------------------------------------------------
# argument normalisation
# --------------------------------------------------------------------------------------------
def pair(value: IntOrPair, name: str, ndim: int = 2) -> tuple[int, ...]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``; anything else is a ``ValueError`` naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    if isinstance(value, int):
        return (value,) * ndim
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}") from None
    if len(items) == 1:
        items = items * ndim
    if len(items) != ndim or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    return items


def _positive(values: Sequence[int], name: str, original) -> None:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {original!r}")


def _non_negative(values: Sequence[int], name: str, original) -> None:
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {original!r}")


def conv_out_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """PyTorch's convolution output size along one dimension (may be <= 0 for bad input)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape``) along one dimension."""
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start inside the right padding
    return out


def transpose_out_size(size: int, kernel: int, stride: int, pad: int, output_padding: int, dilation: int) -> int:
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------
def _check_conv_fields(g) -> None:
    """Checks shared by ConvGeometry and ConvTransposeGeometry (sizes, stride, padding,
    dilation, groups dividing both channel counts)."""
    for name in ("n", "c", "h", "w", "k", "r", "s"):
        value = getattr(g, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _positive(g.stride, "stride", g.stride)
    _non_negative(g.padding, "padding", g.padding)
    _positive(g.dilation, "dilation", g.dilation)
    if g.groups <= 0:
        raise ValueError(f"groups must be positive, got {g.groups!r}")
    if g.c % g.groups:
        raise ValueError(f"in_channels={g.c} is not divisible by groups={g.groups}")
    if g.k % g.groups:
        raise ValueError(f"out_channels={g.k} is not divisible by groups={g.groups}")


class _ConvShapes:
    """Shapes and traffic shared by ConvGeometry and ConvTransposeGeometry (each defines its
    own ``p``, ``q`` and ``weight_shape``)."""

    @property
    def c_per_group(self) -> int:
        return self.c // self.groups

    @property
    def k_per_group(self) -> int:
        return self.k // self.groups

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.p, self.q)

    def min_bytes(self, itemsize: int, bias: bool = False) -> int:
        """Minimum DRAM traffic: input, weight (and bias) read once, output written once."""
        elems = math.prod(self.input_shape) + math.prod(self.weight_shape) + math.prod(self.output_shape)
        return (elems + (self.k if bias else 0)) * itemsize


@dataclass(frozen=True)
class ConvGeometry(_ConvShapes):
    """A 2-D convolution (1-D is ``h == r == 1``): input NxCxHxW, weight Kx(C/groups)xRxS.

    ``padding`` is per side: (top, bottom, left, right).
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        _check_conv_fields(self)
        if self.p <= 0 or self.q <= 0:
            raise ValueError(
                f"output size {self.p}x{self.q} is not positive for input {self.h}x{self.w}, "
                f"kernel {self.r}x{self.s}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}"
            )

    # -- construction from torch-style arguments ------------------------------------------------
    @classmethod
    def from_shapes(
        cls,
        input_shape: Sequence[int],
        weight_shape: Sequence[int],
        stride: IntOrPair = 1,
        padding: Padding = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
    ) -> "ConvGeometry":
        """Validate torch ``conv2d`` arguments against NCHW input and KCRS weight shapes."""
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        if len(input_shape) != 4:
            raise ValueError(f"input must be 4-D (N, C, H, W), got shape {input_shape}")
        if len(weight_shape) != 4:
            raise ValueError(f"weight must be 4-D (K, C/groups, R, S), got shape {weight_shape}")
        n, c, h, w = input_shape
        k, cg, r, s = weight_shape
        if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        if c % groups:
            raise ValueError(f"input channels C={c} are not divisible by groups={groups}")
        if k % groups:
            raise ValueError(f"weight out_channels K={k} are not divisible by groups={groups}")
        if cg * groups != c:
            raise ValueError(
                f"weight shape {weight_shape} does not match input shape {input_shape} with "
                f"groups={groups}: expected weight.shape[1] == C/groups == {c // groups}, got {cg}"
            )
        st = pair(stride, "stride")
        _positive(st, "stride", stride)
        dil = pair(dilation, "dilation")
        _positive(dil, "dilation", dilation)
        pads = conv_padding(padding, (r, s), st, dil)
        return cls(n, c, h, w, k, r, s, st, pads, dil, groups)

    @classmethod
    def from_shapes_1d(cls, input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
        """``conv1d`` arguments (NCL input, KCS weight) as a geometry with ``h == r == 1``."""
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input must be 3-D (N, C, L), got shape {input_shape}")
        if len(weight_shape) != 3:
            raise ValueError(f"weight must be 3-D (K, C/groups, S), got shape {weight_shape}")
        (st,) = pair(stride, "stride", 1)
        (dil,) = pair(dilation, "dilation", 1)
        pad = padding if isinstance(padding, str) else (0, pair(padding, "padding", 1)[0])
        n, c, length = input_shape
        k, cg, s = weight_shape
        return cls.from_shapes((n, c, 1, length), (k, cg, 1, s), (1, st), pad, (1, dil), groups)

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def p(self) -> int:
        return conv_out_size(self.h, self.r, self.stride[0], self.padding[0], self.padding[1], self.dilation[0])

    @property
    def q(self) -> int:
        return conv_out_size(self.w, self.s, self.stride[1], self.padding[2], self.padding[3], self.dilation[1])

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.c_per_group, self.r, self.s)

    @property
    def reduction_length(self) -> int:
        """Terms summed per output element: C/groups * R * S (drives the error tolerance)."""
        return self.c_per_group * self.r * self.s

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.c and self.groups > 1

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) when top == bottom and left == right, else None."""
        t, b, left, right = self.padding
        return (t, left) if (t == b and left == right) else None

    @property
    def flops(self) -> int:
        """Nominal direct-convolution FLOPs 2*N*K*(C/g)*R*S*P*Q (the same for every algorithm)."""
        return 2 * self.n * self.k * self.reduction_length * self.p * self.q

    def __str__(self) -> str:
        text = f"n{self.n}-c{self.c}-{self.h}x{self.w}-k{self.k}-{self.r}x{self.s}"
        text += "-s" + _fmt(self.stride)
        sym = self.symmetric_padding
        text += "-p" + (_fmt(sym) if sym is not None else "x".join(map(str, self.padding)))
        if self.dilation != (1, 1):
            text += "-d" + _fmt(self.dilation)
        if self.groups != 1:
            text += f"-g{self.groups}"
        return text


def conv_padding(padding: Padding, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """Normalise torch ``padding`` (int, pair, 'same', 'valid') to (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' is not supported for strided convolutions (stride={stride})")
            pads: list[int] = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)  # type: ignore[return-value]
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = pair(padding, "padding")
    _non_negative((ph, pw), "padding", padding)
    return (ph, ph, pw, pw)


# --------------------------------------------------------------------------------------------
# transposed convolution
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvTransposeGeometry(_ConvShapes):
    """A 2-D transposed convolution: input NxCxHxW, weight Cx(K/groups)xRxS, output NxKxPxQ."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        _check_conv_fields(self)
        _non_negative(self.output_padding, "output_padding", self.output_padding)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(
                    f"output_padding={self.output_padding} must be smaller than stride "
                    f"{self.stride} or dilation {self.dilation}"
                )
        if self.p <= 0 or self.q <= 0:
            raise ValueError(f"output size {self.p}x{self.q} is not positive for {self}")

    @classmethod
    def from_shapes(cls, input_shape, weight_shape, stride=1, padding=0, output_padding=0,
                    groups=1, dilation=1) -> "ConvTransposeGeometry":
        """Validate torch ``conv_transpose2d`` arguments (weight is C x K/groups x R x S)."""
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        if len(input_shape) != 4:
            raise ValueError(f"input must be 4-D (N, C, H, W), got shape {input_shape}")
        if len(weight_shape) != 4:
            raise ValueError(f"weight must be 4-D (C, K/groups, R, S), got shape {weight_shape}")
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int or a pair for conv_transpose2d, got {padding!r}")
        n, c, h, w = input_shape
        cw, kg, r, s = weight_shape
        if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        if cw != c:
            raise ValueError(
                f"weight shape {weight_shape} does not match input shape {input_shape}: "
                f"expected weight.shape[0] == C == {c}, got {cw}"
            )
        if c % groups:
            raise ValueError(f"input channels C={c} are not divisible by groups={groups}")
        st, pd, op, dil = (pair(v, name) for v, name in (
            (stride, "stride"), (padding, "padding"), (output_padding, "output_padding"), (dilation, "dilation")))
        _positive(st, "stride", stride)
        _non_negative(pd, "padding", padding)
        _non_negative(op, "output_padding", output_padding)
        _positive(dil, "dilation", dilation)
        return cls(n, c, h, w, kg * groups, r, s, st, pd, op, dil, groups)

    @property
    def p(self) -> int:
        return transpose_out_size(self.h, self.r, self.stride[0], self.padding[0], self.output_padding[0], self.dilation[0])

    @property
    def q(self) -> int:
        return transpose_out_size(self.w, self.s, self.stride[1], self.padding[1], self.output_padding[1], self.dilation[1])

    @property
    def weight_shape(self):
        return (self.c, self.k_per_group, self.r, self.s)

    @property
    def reduction_length(self) -> int:
        """Most terms any output element sums: C/groups times the most taps of one output phase.

        Output row ``p`` meets tap ``r`` when ``(p + pad - r*dil) % stride == 0``; without
        dilation that is ceil(R/s) taps at most, with dilation it can be all R.
        """
        def taps(kernel: int, stride: int, pad: int, dil: int) -> int:
            return max(sum((ph + pad - r * dil) % stride == 0 for r in range(kernel)) for ph in range(stride))

        return (self.c_per_group * taps(self.r, self.stride[0], self.padding[0], self.dilation[0])
                * taps(self.s, self.stride[1], self.padding[1], self.dilation[1]))

    @property
    def flops(self) -> int:
        """Useful FLOPs: every input pixel meets every tap once, 2*N*C*(K/g)*R*S*H*W."""
        return 2 * self.n * self.c * self.k_per_group * self.r * self.s * self.h * self.w

    def __str__(self) -> str:
        text = f"n{self.n}-c{self.c}-{self.h}x{self.w}-k{self.k}-{self.r}x{self.s}-T"
        text += "-s" + _fmt(self.stride) + "-p" + _fmt(self.padding)
        if self.output_padding != (0, 0):
            text += "-op" + _fmt(self.output_padding)
        if self.dilation != (1, 1):
            text += "-d" + _fmt(self.dilation)
        if self.groups != 1:
            text += f"-g{self.groups}"
        return text


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------
def check_divisor_override(divisor_override) -> None:
    """``avg_pool2d``'s ``divisor_override``: None or a non-zero int (not a bool)."""
    if divisor_override is None:
        return
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, int) or divisor_override == 0:
        raise ValueError(f"divisor_override must be a non-zero int or None, got {divisor_override!r}")


@dataclass(frozen=True)
class PoolGeometry:
    """A 2-D max/avg pooling window over NxCxHxW (1-D pools use ``h == 1``, kernel (1, k))."""

    n: int
    c: int
    h: int
    w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        for name in ("n", "c", "h", "w"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        _positive(self.kernel, "kernel_size", self.kernel)
        _positive(self.stride, "stride", self.stride)
        _non_negative(self.padding, "padding", self.padding)
        _positive(self.dilation, "dilation", self.dilation)
        for k, p in zip(self.kernel, self.padding):
            if p > k // 2:
                raise ValueError(
                    f"padding={self.padding} must be at most half of kernel_size={self.kernel}"
                )
        if self.p <= 0 or self.q <= 0:
            raise ValueError(
                f"output size {self.p}x{self.q} is not positive: pooling window kernel_size="
                f"{self.kernel}, dilation={self.dilation} is larger than the padded input "
                f"{self.h}x{self.w} with padding={self.padding}"
            )

    @classmethod
    def from_args(cls, input_shape, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False) -> "PoolGeometry":
        """torch ``max_pool2d``/``avg_pool2d`` arguments; ``stride=None`` means kernel_size."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(f"input must be 4-D (N, C, H, W), got shape {input_shape}")
        kernel = pair(kernel_size, "kernel_size")
        st = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else pair(stride, "stride")
        return cls(*input_shape, kernel, st, pair(padding, "padding"), pair(dilation, "dilation"), bool(ceil_mode))

    @classmethod
    def from_args_1d(cls, input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input must be 3-D (N, C, L), got shape {input_shape}")
        (k,) = pair(kernel_size, "kernel_size", 1)
        (st,) = (k,) if stride is None or (not isinstance(stride, int) and len(stride) == 0) else pair(stride, "stride", 1)
        (pd,) = pair(padding, "padding", 1)
        (dl,) = pair(dilation, "dilation", 1)
        n, c, length = input_shape
        return cls(n, c, 1, length, (1, k), (1, st), (0, pd), (1, dl), bool(ceil_mode))

    @property
    def p(self) -> int:
        return pool_out_size(self.h, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0], self.ceil_mode)

    @property
    def q(self) -> int:
        return pool_out_size(self.w, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1], self.ceil_mode)

    @property
    def output_shape(self):
        return (self.n, self.c, self.p, self.q)

    def min_bytes(self, itemsize: int, indices: bool = False) -> int:
        out = self.n * self.c * self.p * self.q
        return (self.n * self.c * self.h * self.w + out) * itemsize + (out * 8 if indices else 0)

    def __str__(self) -> str:
        text = f"n{self.n}-c{self.c}-{self.h}x{self.w}-k{_fmt(self.kernel)}-s{_fmt(self.stride)}-p{_fmt(self.padding)}"
        if self.dilation != (1, 1):
            text += "-d" + _fmt(self.dilation)
        return text + ("-ceil" if self.ceil_mode else "")


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    if out <= 0:
        raise ValueError(f"output_size must be positive, got {out}")
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


# --------------------------------------------------------------------------------------------
# normalization
# --------------------------------------------------------------------------------------------
NORM_KINDS = ("batch", "layer", "instance", "group")


@dataclass(frozen=True)
class NormGeometry:
    """A normalization over NxCxHxW: which axes are reduced is set by ``kind`` (and groups)."""

    kind: str
    n: int
    c: int
    h: int
    w: int
    num_groups: int = 1

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise ValueError(f"kind must be one of {NORM_KINDS}, got {self.kind!r}")
        for name in ("n", "c", "h", "w", "num_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.kind == "group" and self.c % self.num_groups:
            raise ValueError(f"num_groups={self.num_groups} does not divide channels C={self.c}")

    @property
    def shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def reduction_size(self) -> int:
        """Elements per statistic: N*H*W (batch), C*H*W (layer), H*W (instance), C/G*H*W (group)."""
        hw = self.h * self.w
        return {"batch": self.n * hw, "layer": self.c * hw, "instance": hw,
                "group": self.c // self.num_groups * hw}[self.kind]

    def min_bytes(self, itemsize: int) -> int:
        """Read the input once and write the output once (parameters are negligible)."""
        return 2 * self.n * self.c * self.h * self.w * itemsize

    def __str__(self) -> str:
        text = f"{self.kind}-n{self.n}-c{self.c}-{self.h}x{self.w}"
        return text + (f"-g{self.num_groups}" if self.kind == "group" else "")


def _fmt(values: Sequence[int]) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))
