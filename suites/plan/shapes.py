"""Benchmark cases and suites: what one shape of one operator is, and how a suite is shrunk.

A :class:`Case` is one problem of one operator, described by a geometry dataclass from
:mod:`convbench.reference.geometry` (or :class:`AdaptivePoolGeometry` for adaptive pooling) plus the few
operator options a geometry does not hold.  A :class:`Suite` is a named tuple of cases; the named
suites themselves are in :mod:`convbench.suites.plan.catalog`.  :func:`scale_case` shrinks a case (spatial size,
channels, batch) so a GPU-sized suite can run on a CPU.

Nominal operation counts (``Case.flops``), used for effective TFLOP/s and for placing a cell on
the roofline: convolution ``2*N*K*(C/g)*R*S*P*Q`` (the direct count, the same for every algorithm);
transposed convolution ``2*N*C*(K/g)*R*S*H*W``; pooling one operation per window element
(``N*C*P*Q*kh*kw``; adaptive pooling reads each input once: ``N*C*H*W``); normalization 4 per
element to normalize (subtract, scale, affine multiply-add) plus 3 per element when the statistics
are computed from the data (sum, square, add) rather than taken from running statistics.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Union

from convbench.reference.geometry import (ConvGeometry, ConvTransposeGeometry, NormGeometry, PoolGeometry,
                                transpose_out_size)

CONV_OPS = ("conv2d",)
TRANSPOSE_OPS = ("conv_transpose2d",)
POOL_OPS = ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")
NORM_OPS = ("batch_norm", "layer_norm", "instance_norm", "group_norm")
#: L-infinity attacks on convbench.models.small_cnn (forward + input gradient per step)
ATTACK_OPS = ("fgsm", "pgd")
#: a whole network's forward (convbench.models), one cell per policy
NETWORK_OPS = ("network",)
#: the networks a network case can name (convbench.models.ZOO)
NETWORKS = ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "mobilenet_v2")
#: the source of a network suite's cases
NETWORK_SOURCE = "convbench.models (torchvision's architecture and parameter shapes)"
#: every operator a case can name, in report order
OPS = CONV_OPS + TRANSPOSE_OPS + POOL_OPS + NORM_OPS + ATTACK_OPS + NETWORK_OPS
#: what a conv2d case computes: the forward, the input gradient, the weight gradient, or a
#: training step (forward, then every gradient: input, weight and bias)
MODES = ("fwd", "dgrad", "wgrad", "fwd+bwd")
_NORM_KIND = {"batch_norm": "batch", "layer_norm": "layer", "instance_norm": "instance", "group_norm": "group"}


@dataclass(frozen=True)
class AdaptivePoolGeometry:
    """``adaptive_avg_pool2d`` over NxCxHxW to ``out_h x out_w`` (1x1: global average pooling)."""

    n: int
    c: int
    h: int
    w: int
    out_h: int = 1
    out_w: int = 1

    def __post_init__(self) -> None:
        for name in ("n", "c", "h", "w", "out_h", "out_w"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    @property
    def p(self) -> int:
        return self.out_h

    @property
    def q(self) -> int:
        return self.out_w

    @property
    def output_shape(self):
        return (self.n, self.c, self.out_h, self.out_w)

    def min_bytes(self, itemsize: int) -> int:
        return (self.n * self.c * self.h * self.w + self.n * self.c * self.out_h * self.out_w) * itemsize

    def __str__(self) -> str:
        return f"n{self.n}-c{self.c}-{self.h}x{self.w}-to{self.out_h}x{self.out_w}"


@dataclass(frozen=True)
class AttackGeometry:
    """An attack on ``convbench.models.small_cnn(c, classes, width)``: N images of C x H x W,
    ``steps`` signed-gradient steps of size ``alpha`` in the eps-ball (FGSM: one step of eps)."""

    n: int
    c: int
    h: int
    w: int
    width: int = 16
    classes: int = 10
    steps: int = 1
    eps: float = 0.1
    alpha: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n", "c", "h", "w", "width", "classes", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if min(self.h, self.w) < 2:
            raise ValueError(f"the network pools 2x2: h and w must be >= 2, got {self.h}x{self.w}")
        for name in ("eps", "alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def p(self) -> int:
        return self.h

    @property
    def q(self) -> int:
        return self.w

    @property
    def output_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def forward_flops(self) -> int:
        """The network's forward: two 3x3 convolutions (the second at half resolution) and the
        linear layer (norms, pools and activations are a few operations per element: left out)."""
        h2, w2 = -(-self.h // 2), -(-self.w // 2)
        conv1 = 2 * self.n * self.width * self.c * 9 * self.h * self.w
        conv2 = 2 * self.n * 2 * self.width * self.width * 9 * h2 * w2
        return conv1 + conv2 + 2 * self.n * 8 * self.width * self.classes

    @property
    def flops(self) -> int:
        """Per step a forward and the input gradient (about another forward; the parameters are
        frozen, so no weight gradients)."""
        return 2 * self.steps * self.forward_flops

    def min_bytes(self, itemsize: int) -> int:
        weights = self.width * self.c * 9 + 2 * self.width * self.width * 9 + 8 * self.width * self.classes
        return (2 * self.n * self.c * self.h * self.w * self.steps + weights) * itemsize

    def __str__(self) -> str:
        return (f"n{self.n}-c{self.c}-{self.h}x{self.w}-w{self.width}-k{self.classes}-{self.steps}step"
                f"-eps{self.eps:g}-a{self.alpha:g}")


@functools.lru_cache(maxsize=64)
def network_stats(model: str, h: int, w: int, classes: int) -> tuple[int, int, int, int]:
    """(multiply-accumulates per image, parameters, conv layers, longest conv reduction C/g*R*S)
    of ``convbench.models.<model>`` on 3 x h x w images, from the geometry (meta device)."""
    from convbench import models  # lazily: torch; plan is imported by records and the reports

    net = models.ZOO[model](classes, algorithm="torch")
    layers = models.conv_layers(net, (1, 3, h, w))
    return (models.count_macs(net, (1, 3, h, w)), sum(p.numel() for p in net.parameters()), len(layers),
            max(g.reduction_length for _, g in layers))


@dataclass(frozen=True)
class NetworkGeometry:
    """One forward of ``convbench.models.<model>(classes)`` on N images of 3 x H x W (eval mode)."""

    model: str
    n: int
    h: int = 224
    w: int = 224
    classes: int = 1000

    def __post_init__(self) -> None:
        if self.model not in NETWORKS:
            raise ValueError(f"model must be one of {NETWORKS}, got {self.model!r}")
        for name in ("n", "h", "w", "classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if min(self.h, self.w) < MIN_NETWORK_RESOLUTION:
            raise ValueError(f"h and w must be >= {MIN_NETWORK_RESOLUTION} (five stride-2 stages), "
                             f"got {self.h}x{self.w}")

    c = 3

    @property
    def p(self) -> int:
        return 1

    @property
    def q(self) -> int:
        return 1

    @property
    def output_shape(self):
        return (self.n, self.classes)

    @property
    def stats(self) -> tuple[int, int, int, int]:
        return network_stats(self.model, self.h, self.w, self.classes)

    @property
    def flops(self) -> int:
        """2 x the multiply-accumulates of the convolutions and linear layers."""
        return 2 * self.n * self.stats[0]

    @property
    def depth(self) -> int:
        return self.stats[2]

    @property
    def reduction_length(self) -> int:
        return self.stats[3]

    def min_bytes(self, itemsize: int) -> int:
        """Parameters, images and logits once (activations are the network's own business)."""
        return (self.stats[1] + self.n * 3 * self.h * self.w + self.n * self.classes) * itemsize

    def __str__(self) -> str:
        return f"{self.model}-n{self.n}-{self.h}x{self.w}" + (f"-k{self.classes}" if self.classes != 1000 else "")


#: the smallest input side a network case takes (32 pixels: every stage keeps at least 1x1)
MIN_NETWORK_RESOLUTION = 32

Geometry = Union[ConvGeometry, ConvTransposeGeometry, PoolGeometry, AdaptivePoolGeometry, NormGeometry,
                 AttackGeometry, NetworkGeometry]
_GEOMETRY_OF_OP = {
    "conv2d": ConvGeometry, "conv_transpose2d": ConvTransposeGeometry,
    "max_pool2d": PoolGeometry, "avg_pool2d": PoolGeometry, "adaptive_avg_pool2d": AdaptivePoolGeometry,
    "batch_norm": NormGeometry, "layer_norm": NormGeometry, "instance_norm": NormGeometry,
    "group_norm": NormGeometry, "fgsm": AttackGeometry, "pgd": AttackGeometry, "network": NetworkGeometry,
}
#: geometry class name -> class, for reading records back
GEOMETRY_TYPES = {cls.__name__: cls for cls in set(_GEOMETRY_OF_OP.values())}


@dataclass(frozen=True)
class Case:
    """One shape of one operator in a suite.

    ``label`` names the layer in its network (``"l1.3x3"``); ``source`` says where it comes from.
    ``training`` (batch_norm) uses batch statistics instead of running statistics;
    ``count_include_pad`` is avg_pool2d's option; ``mode`` (conv2d) is one of :data:`MODES`;
    ``count``: how often the layer occurs in its network (a layer suite's weighted total is then
    comparable with the whole-network cell).
    """

    op: str
    geom: Geometry
    label: str = ""
    source: str = ""
    training: bool = False
    count_include_pad: bool = True
    mode: str = "fwd"
    count: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive int, got {self.count!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "fwd" and self.op != "conv2d" and not (self.op == "network" and self.mode == "fwd+bwd"):
            raise ValueError(f"mode={self.mode!r} applies to conv2d (and 'fwd+bwd', a training step, to network), "
                             f"got op {self.op!r}")
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        expected = _GEOMETRY_OF_OP[self.op]
        if not isinstance(self.geom, expected):
            raise ValueError(f"op {self.op!r} needs a {expected.__name__}, got {type(self.geom).__name__}")
        if self.op in _NORM_KIND and self.geom.kind != _NORM_KIND[self.op]:
            raise ValueError(f"op {self.op!r} needs a NormGeometry of kind {_NORM_KIND[self.op]!r}, "
                             f"got kind={self.geom.kind!r}")
        if self.op == "conv2d" and self.geom.symmetric_padding is None:
            raise ValueError(f"suite cases need symmetric padding (torch's conv2d signature), got {self.geom}")
        if self.op == "fgsm" and self.geom.steps != 1:
            raise ValueError(f"fgsm takes one step, got steps={self.geom.steps}")
        if self.training and self.op != "batch_norm":
            raise ValueError(f"training=True applies to batch_norm only, got op {self.op!r}")
        if not self.count_include_pad and self.op != "avg_pool2d":
            raise ValueError(f"count_include_pad=False applies to avg_pool2d only, got op {self.op!r}")

    @property
    def shape(self) -> str:
        """Readable, unique within an op: the geometry's ``str`` plus the options."""
        text = str(self.geom)
        if self.training:
            text += "-train"
        if not self.count_include_pad:
            text += "-nopadcount"
        if self.mode != "fwd":
            text += f"-{self.mode}"
        return text

    @property
    def family(self) -> str:
        if self.op in CONV_OPS:
            return "conv"
        if self.op in TRANSPOSE_OPS:
            return "conv_transpose"
        if self.op in ATTACK_OPS:
            return "attack"
        if self.op in NETWORK_OPS:
            return "network"
        return "pool" if self.op in POOL_OPS else "norm"

    @property
    def flops(self) -> int:
        """Nominal operation count (module docstring); the same for every algorithm."""
        g = self.geom
        if self.family in ("conv", "conv_transpose"):
            return g.flops * (3 if self.mode == "fwd+bwd" else 1)  # dgrad and wgrad: one forward's each
        if self.family == "network":
            return g.flops * (3 if self.mode == "fwd+bwd" else 1)  # a training step: forward, dgrad, wgrad
        if self.family == "attack":
            return g.flops
        if self.op == "adaptive_avg_pool2d":
            return g.n * g.c * g.h * g.w
        if self.family == "pool":
            return g.n * g.c * g.p * g.q * g.kernel[0] * g.kernel[1]
        elems = g.n * g.c * g.h * g.w
        stats_from_data = self.op != "batch_norm" or self.training
        return elems * (7 if stats_from_data else 4)

    def min_bytes(self, itemsize: int) -> int:
        """Each input (and weight) read once, each output written once (no bias, no indices).
        dgrad reads dY and W and writes dX, wgrad reads X and dY and writes dW: the forward's
        three tensors either way; a training step moves them three times."""
        return self.geom.min_bytes(itemsize) * (3 if self.mode == "fwd+bwd" else 1)

    @property
    def reduction_length(self) -> int:
        """Terms combined per output element (drives the tolerance)."""
        g = self.geom
        if self.family == "network":
            return g.reduction_length  # the longest conv's (the cell's tolerance also grows with depth)
        if self.mode != "fwd":
            return max(self.reduction_lengths)
        if self.family in ("conv", "conv_transpose"):
            return g.reduction_length
        if self.family == "attack":
            return g.steps  # each step adds +-alpha to the image: rounding grows with the steps
        if self.op == "max_pool2d":
            return 1  # a max is exact
        if self.op == "avg_pool2d":
            return g.kernel[0] * g.kernel[1]
        if self.op == "adaptive_avg_pool2d":
            return math.ceil(g.h / g.out_h + 1) * math.ceil(g.w / g.out_w + 1)
        return g.reduction_size if (self.op != "batch_norm" or self.training) else 1

    @property
    def reduction_lengths(self) -> tuple[int, ...]:
        """Per output of the call: a training step returns (y, dX, dW, db), each with its own
        reduction (C/g*R*S, K/g*R*S, N*P*Q, N*P*Q); the others return one output."""
        g = self.geom
        if self.mode == "fwd":
            return (self.reduction_length,)
        dgrad = g.k_per_group * g.r * g.s
        wgrad = g.n * g.p * g.q
        return {"dgrad": (dgrad,), "wgrad": (wgrad,),
                "fwd+bwd": (g.reduction_length, dgrad, wgrad, wgrad)}[self.mode]

    def __str__(self) -> str:
        return f"{self.op}:{self.shape}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cases: tuple[Case, ...] = field(default_factory=tuple)
    #: a network suite: (name, scaled NetworkGeometry, description) -> the suite of that network, so
    #: that scaling rebuilds its layer cells from the scaled network (channels stay)
    rebuild: Callable | None = field(default=None, compare=False, repr=False)

    def ops(self) -> tuple[str, ...]:
        present = {c.op for c in self.cases}
        return tuple(op for op in OPS if op in present)


# --------------------------------------------------------------------------------------------
# shrinking a case for a CPU run
# --------------------------------------------------------------------------------------------
def _shrink(value: int, factor: float, minimum: int = 1) -> int:
    return max(minimum, int(round(value * factor)))


#: channel counts are not shrunk below this (or below their original value): ``tl.dot`` needs 16,
#: so a shrunk layer keeps the algorithms of the full-size one applicable
MIN_CHANNELS = 16


def _channels(value: int, factor: float) -> int:
    return _shrink(value, factor, min(value, MIN_CHANNELS))


def _min_extent(kernel: int, dilation: int, pad_total: int) -> int:
    """Smallest input extent that still gives one output."""
    return max(1, dilation * (kernel - 1) + 1 - pad_total)


def scale_case(case: Case, factor: float, batch: int | None = None) -> Case:
    """``case`` with spatial size, channels and batch multiplied by ``factor`` (then ``batch``).

    Kernel sizes, strides, padding and dilation are kept; sizes never drop below what keeps the
    output non-empty; channels never drop below :data:`MIN_CHANNELS` (nor below the original);
    depthwise layers stay depthwise; group counts still divide the channels.
    """
    if not factor > 0:
        raise ValueError(f"scale must be positive, got {factor!r}")
    if batch is not None and (not isinstance(batch, int) or batch <= 0):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if factor == 1 and batch is None:
        return case
    g = case.geom
    n = batch if batch is not None else _shrink(g.n, factor)
    if isinstance(g, ConvGeometry):
        h = max(_shrink(g.h, factor), _min_extent(g.r, g.dilation[0], g.padding[0] + g.padding[1]))
        w = max(_shrink(g.w, factor), _min_extent(g.s, g.dilation[1], g.padding[2] + g.padding[3]))
        if g.is_depthwise:
            c = groups = _channels(g.c, factor)
            k = c * g.k_per_group
        else:
            groups = g.groups
            c = groups * _channels(g.c_per_group, factor)
            k = groups * _channels(g.k_per_group, factor)
        geom = replace(g, n=n, c=c, h=h, w=w, k=k, groups=groups)
    elif isinstance(g, ConvTransposeGeometry):
        groups = g.groups
        h, w = _shrink(g.h, factor), _shrink(g.w, factor)
        while transpose_out_size(h, g.r, g.stride[0], g.padding[0], g.output_padding[0], g.dilation[0]) <= 0:
            h += 1
        while transpose_out_size(w, g.s, g.stride[1], g.padding[1], g.output_padding[1], g.dilation[1]) <= 0:
            w += 1
        geom = replace(g, n=n, c=groups * _channels(g.c_per_group, factor), h=h, w=w,
                       k=groups * _channels(g.k_per_group, factor))
    elif isinstance(g, PoolGeometry):
        h = max(_shrink(g.h, factor), _min_extent(g.kernel[0], g.dilation[0], 2 * g.padding[0]))
        w = max(_shrink(g.w, factor), _min_extent(g.kernel[1], g.dilation[1], 2 * g.padding[1]))
        geom = replace(g, n=n, c=_channels(g.c, factor), h=h, w=w)
    elif isinstance(g, AttackGeometry):
        geom = replace(g, n=n, h=max(_shrink(g.h, factor), 2), w=max(_shrink(g.w, factor), 2),
                       width=_shrink(g.width, factor, min(g.width, 8)))
    elif isinstance(g, NetworkGeometry):  # the architecture is fixed: resolution and batch shrink
        geom = replace(g, n=n, h=max(_shrink(g.h, factor), MIN_NETWORK_RESOLUTION),
                       w=max(_shrink(g.w, factor), MIN_NETWORK_RESOLUTION))
    elif isinstance(g, AdaptivePoolGeometry):
        geom = replace(g, n=n, c=_channels(g.c, factor), h=max(_shrink(g.h, factor), g.out_h),
                       w=max(_shrink(g.w, factor), g.out_w))
    else:  # NormGeometry
        groups = g.num_groups if g.kind == "group" else 1
        c = groups * _shrink(g.c // groups, factor, min(g.c // groups, max(1, MIN_CHANNELS // groups)))
        geom = replace(g, n=n, c=c, h=_shrink(g.h, factor), w=_shrink(g.w, factor))
    return replace(case, geom=geom)


def scale_suite(suite: Suite, factor: float = 1.0, batch: int | None = None) -> Suite:
    networks = [c for c in suite.cases if c.op == "network"]
    if networks and suite.rebuild is not None and (factor != 1 or batch is not None):
        # a network suite's layer cells are the scaled network's own layers (channels stay)
        return suite.rebuild(suite.name, scale_case(networks[0], factor, batch).geom, suite.description)
    cases = tuple(scale_case(c, factor, batch) for c in suite.cases)
    # shrinking can map two layers onto one shape: keep the first of each
    seen, unique = set(), []
    for c in cases:
        if (c.op, c.shape) not in seen:
            seen.add((c.op, c.shape))
            unique.append(c)
    return replace(suite, cases=tuple(unique))
