"""Convolution: the public launchers and the one explicit list of algorithms.

Each algorithm lives in its own module and exposes the same things:

``launch(x, weight, bias, geom, *, input_precision, config) -> Tensor``
    ``x`` is validated NCHW-shaped (any memory format), ``weight`` KCRS, ``bias`` (K,) or None,
    ``geom`` the :class:`convbench.reference.geometry.ConvGeometry`; returns the output in ``x``'s dtype
    and memory format; ``config=None`` is the module's heuristic.
``unsupported(geom, dtype) -> str | None``
    why the algorithm does not apply to this problem, or None when it does (only real limits:
    the GEMM family takes every geometry; Winograd needs 3x3/stride 1; FFT stride 1).
``configs(dtype)``
    every config a launch may use (each with a readable ``name``).

:data:`ALGORITHMS` lists them; nothing is registered by import side effects.  The public
functions take every input ``torch.nn.functional`` takes: unbatched inputs, and empty ones (an
empty batch returns an empty output of the right shape without launching a kernel).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import triton

from convbench.reference.geometry import ConvGeometry, ConvTransposeGeometry

from .. import _common, tuning
from . import _fft_kernels, _gemm, _winograd_kernels, depthwise_grad, direct, fft, grad, im2col, implicit_gemm, transpose, wgrad, winograd
from ._epilogue import ACTIVATIONS, TORCH_ACTIVATIONS, make_epilogue
from .grad import conv1d_input_grad, conv1d_weight_grad, conv2d_input_grad, conv2d_weight_grad

@dataclass(frozen=True)
class ConvAlgorithm:
    name: str
    launch: Callable[..., torch.Tensor]
    unsupported: Callable[[ConvGeometry, torch.dtype], Optional[str]]
    #: workspace bytes the algorithm allocates beyond input, weight and output
    workspace_bytes: Callable[[ConvGeometry, int], int]
    #: scalar multiplies the algorithm performs (direct: N*K*C/g*R*S*P*Q)
    multiplies: Callable[[ConvGeometry], int]
    #: every config a launch may use, for a dtype
    configs: Callable[[torch.dtype], tuple]
    #: the heuristic config: (geometry, dtype, channels_last) -> config
    default_config: Callable[[ConvGeometry, torch.dtype, bool], object]
    #: why a config cannot run this geometry/dtype (a tile it cannot use, shared memory), or None
    config_unsupported: Callable[[ConvGeometry, torch.dtype, object], Optional[str]]
    #: the kernel source files a launch runs (their hash keys tuned choices)
    sources: tuple
    #: (x, weight, bias, geom, *, input_precision, config) -> (launches, output): the one-time work
    #: done, each launch a zero-argument callable writing into output (see :class:`ConvPlan`)
    plan: Callable = None
    #: error relative to the direct algorithm's, for tolerances (Winograd/FFT lose precision)
    error_scale: float = 1.0

    def source_hash(self) -> str:
        return tuning.source_hash(self.sources)


def _direct_multiplies(g: ConvGeometry) -> int:
    return g.flops // 2


def _files(*modules) -> tuple:
    return tuple(m.__file__ for m in (*modules, _common))


def _gemm_config_unsupported(geom: ConvGeometry, dtype: torch.dtype, cfg) -> Optional[str]:
    if not isinstance(cfg, _gemm.GemmConfig):
        return f"config {getattr(cfg, 'name', cfg)!r} is not a GemmConfig"
    if min(cfg.block_m, cfg.block_n, cfg.block_k) < 16:
        return f"config {cfg.name}: every block dimension must be >= 16 for tl.dot"
    if not cfg.fits(dtype):
        return f"config {cfg.name} needs more than {_gemm.SMEM_LIMIT} bytes of shared memory for {dtype}"
    return None


def _direct_config_unsupported(geom: ConvGeometry, dtype: torch.dtype, cfg) -> Optional[str]:
    if cfg not in direct.configs_for(geom):
        kind = "depthwise (C/groups == 1)" if isinstance(cfg, direct.DepthwiseConfig) else "general (C/groups > 1)"
        return f"config {getattr(cfg, 'name', cfg)!r} is for {kind} geometries, not {geom}"
    return None


def _typed(cls) -> Callable:
    def check(geom: ConvGeometry, dtype: torch.dtype, cfg) -> Optional[str]:
        return None if isinstance(cfg, cls) else f"config {getattr(cfg, 'name', cfg)!r} is not a {cls.__qualname__}"
    return check


def _fft_config_unsupported(geom: ConvGeometry, dtype: torch.dtype, cfg) -> Optional[str]:
    if not isinstance(cfg, fft.Config):
        return f"config {getattr(cfg, 'name', cfg)!r} is not an fft.Config"
    if max(geom.r, geom.s) > cfg.tile // 2 + 1:  # the filter transform's limit (and min(valid) >= 1)
        return f"config {cfg.name}: tile {cfg.tile} is too small for a {geom.r}x{geom.s} filter"
    return None


def _implicit_gemm_plan(x, weight, bias, geom, *, input_precision="ieee", config=None):
    run, out = implicit_gemm.plan(x, weight, bias, geom, input_precision=input_precision, config=config)
    return (run,), out


def _im2col_plan(x, weight, bias, geom, *, input_precision="ieee", config=None):
    to_columns, gemm, out = im2col.plan(x, weight, bias, geom, input_precision=input_precision, config=config)
    return (to_columns, gemm), out


_GEMM_SOURCES = _files(implicit_gemm, _gemm)
ALGORITHMS: tuple[ConvAlgorithm, ...] = (
    ConvAlgorithm("direct", direct.launch, direct.unsupported, direct.workspace_bytes, _direct_multiplies,
                  direct.configs, lambda g, dt, cl: direct.default_config(g, cl, _common.interpreting()), _direct_config_unsupported,
                  _files(direct), direct.plan),
    ConvAlgorithm("im2col", im2col.launch, im2col.unsupported, im2col.workspace_bytes, _direct_multiplies,
                  im2col.configs, lambda g, dt, cl: im2col.default_config(g, dt), _gemm_config_unsupported,
                  (im2col.__file__, *_GEMM_SOURCES), _im2col_plan),
    ConvAlgorithm("implicit_gemm", implicit_gemm.launch, implicit_gemm.unsupported,
                  implicit_gemm.workspace_bytes, _direct_multiplies,
                  implicit_gemm.configs, lambda g, dt, cl: implicit_gemm.default_config(g, dt),
                  _gemm_config_unsupported, _GEMM_SOURCES, _implicit_gemm_plan),
    ConvAlgorithm("winograd_f2", winograd.launch_f2, winograd.unsupported_f2, winograd.workspace_bytes_f2,
                  winograd.multiplies_f2, winograd.configs, lambda g, dt, cl: winograd.default_config(g, 2),
                  _typed(winograd.Config), _files(winograd, _winograd_kernels, _gemm), winograd.plan_f2,
                  error_scale=winograd.ERROR_SCALE_F2),
    ConvAlgorithm("winograd_f4", winograd.launch_f4, winograd.unsupported_f4, winograd.workspace_bytes_f4,
                  winograd.multiplies_f4, winograd.configs, lambda g, dt, cl: winograd.default_config(g, 4),
                  _typed(winograd.Config), _files(winograd, _winograd_kernels, _gemm), winograd.plan_f4,
                  error_scale=winograd.ERROR_SCALE_F4),
    ConvAlgorithm("fft", fft.launch, fft.unsupported, fft.workspace_bytes, fft.multiplies,
                  fft.configs, lambda g, dt, cl: fft.default_config(g), _fft_config_unsupported,
                  _files(fft, _fft_kernels, _winograd_kernels, winograd, _gemm), fft.plan,
                  error_scale=fft.ERROR_SCALE),
)

BY_NAME = {a.name: a for a in ALGORITHMS}
CONV2D_ALGORITHMS: tuple[str, ...] = tuple(a.name for a in ALGORITHMS)
#: the algorithms whose kernels apply conv2d's epilogue (scale, shift, residual, activation) before the store
FUSED_EPILOGUE: tuple[str, ...] = ("direct", "im2col", "implicit_gemm")
CONV_TRANSPOSE2D_ALGORITHMS: tuple[str, ...] = ("phase",)


def choose_algorithm(geom: ConvGeometry, dtype: torch.dtype) -> str:
    """The documented heuristic ``auto`` rule (the benchmark suite measures how good it is).

    1. ``direct`` for one input channel per group of a grouped layer (depthwise layers, channel
       multipliers): its depthwise kernel reads each input channel once, where a GEMM would own a
       16-wide column tile for one column of each group.  A dense layer with one input channel (a
       grayscale stem) is a stem like the RGB one and goes to rule 3.
    2. ``direct`` for grouped layers narrow on both sides (groups > 1, C/g < 16 and K/g < 16).
    3. ``implicit_gemm`` otherwise: dense and wide-grouped layers, RGB and grayscale stems (its flat (r, s, c)
       reduction), 1x1s (its GEMM fast path) and small-K heads (BLOCK_N = 16).
    Winograd and FFT are never chosen by the heuristic; with tuned entries for a problem in the
    tuning cache, ``auto`` takes the fastest measured algorithm instead (:func:`resolve_conv2d`).
    """
    if geom.c_per_group == 1 and geom.groups > 1:
        return "direct"
    if geom.groups > 1 and geom.c_per_group < 16 and geom.k_per_group < 16:
        return "direct"
    return "implicit_gemm"


def algorithm_for(name: str, geom: ConvGeometry, dtype: torch.dtype) -> ConvAlgorithm:
    """Resolve ``algorithm=`` (``"auto"``: the heuristic, or a name) and check that it applies."""
    if name == "auto":
        name = choose_algorithm(geom, dtype)
    if name not in BY_NAME:
        raise ValueError(f"algorithm must be 'auto' or one of {CONV2D_ALGORITHMS}, got {name!r}")
    algo = BY_NAME[name]
    reason = algo.unsupported(geom, dtype)
    if reason is not None:
        raise ValueError(f"algorithm={name!r} does not apply to {geom}: {reason}")
    return algo


def conv_configs(algorithm: str, dtype: torch.dtype = torch.float32) -> tuple:
    """Every config a launch of ``algorithm`` (a conv2d algorithm, or ``"phase"`` for
    conv_transpose2d) may use with ``dtype``; each has a readable ``name``, and
    ``conv2d(..., algorithm=algorithm, config=c)`` (or ``config=c.name``) runs it."""
    if dtype not in _common.FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of fp32, fp16, bf16, got {dtype!r}")
    if algorithm == "phase":
        return transpose.configs(dtype)
    if algorithm not in BY_NAME:
        raise ValueError(f"algorithm must be one of {CONV2D_ALGORITHMS + CONV_TRANSPOSE2D_ALGORITHMS}, "
                         f"got {algorithm!r}")
    return BY_NAME[algorithm].configs(dtype)


# ----------------------------------------------------------------------------------------------
# config choice: heuristic, by name or object, tuned
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvPlan:
    """A conv2d call split in two.  Making the plan does the one-time work: argument checks,
    the choice of algorithm and config, output and workspace allocation, the weight's layout
    (implicit_gemm reads it as K x R x S x C) and the filter transforms (Winograd, FFT).
    :meth:`run` then only launches the kernels (``launches``: 1 to 3) into ``output`` and
    returns it: the kernel time a benchmark should measure.  The same output buffer is written
    by every run."""

    algorithm: str
    config_name: str
    launches: tuple
    output: torch.Tensor

    def run(self) -> torch.Tensor:
        for launch in self.launches:
            launch()
        return self.output


@dataclass(frozen=True)
class Choice:
    """What a conv2d call runs: the algorithm, the config object (None: the module heuristic's,
    named in ``config_name``) and where the choice came from: ``"heuristic"``, ``"given"``,
    ``"tuned"`` (the tuning cache or a fresh tuning) or ``"not tuned: no GPU"``; ``algorithm_from``
    says the same for ``algorithm="auto"`` (``"heuristic"`` or ``"measured"``)."""

    algorithm: str
    config: object
    config_name: str
    config_from: str
    algorithm_from: str = "given"
    tuning_s: float = 0.0


_WARNED: set = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


NOT_TUNED = "not tuned: no GPU"


def can_tune(x: torch.Tensor) -> bool:
    """Tuning measures on a GPU; under the CPU interpreter ``config="tune"`` is the heuristic."""
    return x.device.type == "cuda" and not _common.interpreting()


def tune_key(algo: ConvAlgorithm, geom: ConvGeometry, x: torch.Tensor, input_precision: str) -> tuning.TuneKey:
    precision = input_precision if x.dtype == torch.float32 else "ieee"
    return tuning.TuneKey(tuning.device_name(x), triton.__version__, algo.source_hash(), algo.name,
                          tuning.geometry_id(geom), _gemm.DTYPE_NAME[x.dtype], precision, tuning.layout_of(x))


def config_by_name(algo: ConvAlgorithm, name: str, dtype: torch.dtype):
    """The config of ``algo`` called ``name``; one listed only for other dtypes is returned too,
    so that the caller's fit check says why it does not fit this one (shared memory)."""
    for d in (dtype, *_common.FLOAT_DTYPES):
        for cfg in algo.configs(d):
            if cfg.name == name:
                return cfg
    raise ValueError(f"config={name!r} is not a config of {algo.name} for {dtype}; choose one of "
                     f"{[c.name for c in algo.configs(dtype)]}, 'heuristic' or 'tune'")


def candidates(algo: ConvAlgorithm, geom: ConvGeometry, dtype: torch.dtype) -> list:
    """The configs tuning tries for one problem: every config that can run it."""
    return [c for c in algo.configs(dtype) if algo.config_unsupported(geom, dtype, c) is None]


def runner(algo: ConvAlgorithm, x, weight, bias, geom: ConvGeometry, input_precision: str, config):
    """A zero-argument callable running only the kernel launches of ``algo`` with ``config``:
    planned once (validation, allocation, weight layout, filter transforms), outside any timing."""
    launches, out = algo.plan(x, weight, bias, geom, input_precision=input_precision, config=config)
    return ConvPlan(algo.name, getattr(config, "name", "heuristic"), tuple(launches), out).run


#: the algorithms whose launches :func:`meta_launches` rebuilds (their kernels are ``_gemm.Launch`` objects)
LAUNCH_ALGORITHMS = ("implicit_gemm", "im2col")


def meta_launches(algorithm: str, geom: ConvGeometry, dtype: torch.dtype, layout: str,
                  input_precision: str = "ieee", config=None) -> list:
    """The kernel launches (:class:`_gemm.Launch`) a GEMM-family conv2d of ``geom`` makes, built
    on meta tensors (nothing is allocated or run): what the static analysis compiles for a cell's
    exact specialisation (precompiling, tuning's pruning, the static-vs-measured table).
    ``config``: a config, its name, or None (the heuristic's); ``layout``: "nchw" or "nhwc"."""
    if algorithm not in LAUNCH_ALGORITHMS:
        raise ValueError(f"meta_launches rebuilds {LAUNCH_ALGORITHMS}, not {algorithm!r}")
    algo = BY_NAME[algorithm]
    if config is None:
        config = algo.default_config(geom, dtype, layout == "nhwc")
    elif isinstance(config, str):
        config = config_by_name(algo, config, dtype)
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x = torch.empty(geom.input_shape, dtype=dtype, device="meta").contiguous(memory_format=fmt)
    w = torch.empty(geom.weight_shape, dtype=dtype, device="meta")
    b = torch.empty(geom.k, dtype=dtype, device="meta")
    if algorithm == "implicit_gemm":
        return [implicit_gemm._plan_unchecked(x, w, b, geom, input_precision, config)[0]]
    return list(im2col._plan_unchecked(x, w, b, geom, input_precision, config)[:2])


def tune_conv2d(x, weight, bias, geom: ConvGeometry, algorithm: str, *, input_precision: str = "ieee",
                timer: tuning.Timer, prune: tuning.Pruner | None = None,
                cache: tuning.TuneCache | None = None) -> tuning.TuneResult:
    """Time every candidate config of ``algorithm`` on these tensors (``timer``), after ``prune``,
    and store the winner in ``cache`` (when given)."""
    algo = algorithm_for(algorithm, geom, x.dtype)
    result = tuning.tune(algo.name, candidates(algo, geom, x.dtype),
                         lambda cfg: runner(algo, x, weight, bias, geom, input_precision, cfg),
                         timer=timer, prune=prune)
    if cache is not None:
        cache.put(tune_key(algo, geom, x, input_precision), result)
    return result


def _cached_or_tuned(algo: ConvAlgorithm, x, weight, bias, geom, input_precision) -> tuple[object, float]:
    """(config, seconds spent tuning now) from the cache, tuning on a miss with the default timer."""
    cache = tuning.default_cache()
    hit = cache.get(tune_key(algo, geom, x, input_precision))
    if hit is not None:
        try:
            return config_by_name(algo, hit.config, x.dtype), 0.0
        except ValueError:
            pass  # a config that no longer exists: tune again
    fits = lambda cfg: algo.config_unsupported(geom, x.dtype, cfg) is None  # noqa: E731
    result = tune_conv2d(x, weight, bias, geom, algo.name, input_precision=input_precision,
                         timer=tuning.default_timer, prune=tuning.default_pruner(fits), cache=cache)
    return config_by_name(algo, result.config, x.dtype), result.tuning_s


def _applicable(geom: ConvGeometry, dtype) -> list[ConvAlgorithm]:
    return [a for a in ALGORITHMS if a.unsupported(geom, dtype) is None]


def resolve_conv2d(x, weight, bias, geom: ConvGeometry, *, algorithm: str = "auto", config=None,
                   input_precision: str = "ieee") -> Choice:
    """The algorithm and config a conv2d call runs (conv2d calls this; the suite records it).

    ``config``: None or ``"heuristic"`` (the module heuristic), a config object or its name (one
    of :func:`conv_configs`), or ``"tune"`` (the tuning cache, tuning on a miss; under the CPU
    interpreter the heuristic, with one warning).  ``algorithm="auto"`` with ``config="tune"``
    tunes every applicable algorithm and takes the fastest (cuDNN's "find"); with any other
    config it takes the fastest *measured* algorithm when the cache holds entries for the
    problem, else the heuristic of :func:`choose_algorithm`.
    """
    dtype = x.dtype
    if isinstance(config, str) and config == "tune" and not can_tune(x):
        _warn_once(f"config='tune': {NOT_TUNED} (Triton runs in the CPU interpreter); using the heuristic config")
        algo = algorithm_for(algorithm, geom, dtype)
        return Choice(algo.name, None, algo.default_config(geom, dtype, _common.is_channels_last(x)).name,
                      NOT_TUNED, "heuristic" if algorithm == "auto" else "given")
    if algorithm == "auto" and isinstance(config, str) and config == "tune":
        best, spent = None, 0.0
        for algo in _applicable(geom, dtype):
            cfg, seconds = _cached_or_tuned(algo, x, weight, bias, geom, input_precision)
            spent += seconds
            ms = tuning.default_cache().get(tune_key(algo, geom, x, input_precision)).ms
            if best is None or ms < best[0]:
                best = (ms, algo, cfg)
        _, algo, cfg = best
        return Choice(algo.name, cfg, cfg.name, "tuned", "measured", spent)
    algorithm_from = "given"
    if algorithm == "auto":
        algorithm_from = "heuristic"
        measured = None
        if can_tune(x) and config is None:
            current = {a.name: a.source_hash() for a in _applicable(geom, dtype)}
            some = next(iter(current))
            measured = tuning.default_cache().best_for_problem(
                tune_key(BY_NAME[some], geom, x, input_precision), current)
        if measured is not None:
            algo = BY_NAME[measured.algorithm]
            cfg = config_by_name(algo, measured.config, dtype)
            return Choice(algo.name, cfg, cfg.name, "tuned", "measured")
    algo = algorithm_for(algorithm, geom, dtype)
    if config is None or (isinstance(config, str) and config == "heuristic"):
        return Choice(algo.name, None, algo.default_config(geom, dtype, _common.is_channels_last(x)).name,
                      "heuristic", algorithm_from)
    if isinstance(config, str) and config == "tune":
        cfg, seconds = _cached_or_tuned(algo, x, weight, bias, geom, input_precision)
        return Choice(algo.name, cfg, cfg.name, "tuned", algorithm_from, seconds)
    cfg = config_by_name(algo, config, dtype) if isinstance(config, str) else config
    reason = algo.config_unsupported(geom, dtype, cfg)
    if reason is not None:
        raise ValueError(f"config does not fit algorithm={algo.name!r}: {reason}")
    return Choice(algo.name, cfg, cfg.name, "given", algorithm_from)


# ----------------------------------------------------------------------------------------------
# public launchers
# ----------------------------------------------------------------------------------------------
def _check_conv_tensors(input, weight, bias, ndims: tuple[int, ...]) -> None:
    _common.check_tensor(input, "input")
    if input.dim() not in ndims:
        forms = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"input must be {forms} (batched or unbatched), got shape {tuple(input.shape)}")
    _common.check_tensor(weight, "weight", ndim=ndims[-1])
    _common.check_same(input, "input", weight, "weight")
    if bias is not None:
        _common.check_tensor(bias, "bias", ndim=1)
        _common.check_same(input, "input", bias, "bias")


def _geometry_of_empty(make, input_shape, weight_shape, *args):
    """Validate the arguments of a call with an empty batch or no input channels, as torch
    does, on stand-in sizes of 1 (the output sizes do not depend on N or C)."""
    n, c = input_shape[:2]
    groups = args[-1]
    stand_in = (max(n, 1), c if c else groups, *input_shape[2:])
    w_stand_in = (*weight_shape[:1], weight_shape[1] if weight_shape[1] else 1, *weight_shape[2:])
    return make(stand_in, w_stand_in, *args)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto", input_precision: str = "ieee", config=None,
           activation: str | None = None, residual=None, scale=None, shift=None) -> torch.Tensor:
    """``torch.nn.functional.conv2d`` with a choice of algorithm (see :data:`CONV2D_ALGORITHMS`).

    ``input_precision`` applies to fp32 inputs: ``"ieee"`` (exact fp32 products) or ``"tf32"``.
    fp16/bf16 inputs always accumulate in fp32.  The output has the input's dtype and memory
    format (NCHW or channels_last).  ``config``: see :func:`resolve_conv2d` (None: heuristic;
    a config or its name from :func:`conv_configs`; ``"tune"``).  Unbatched ``(C, H, W)`` input
    gives a ``(K, P, Q)`` output; an empty batch an empty ``(0, K, P, Q)`` output, and no input
    channels torch's ``(N, 0, P, Q)``, both without a launch.

    The epilogue ``act((conv + bias) * scale + shift + residual)``: ``scale``/``shift`` per output
    channel (K,), ``residual`` of the output's shape, ``activation`` one of
    ``"relu", "relu6", "silu", "sigmoid"`` (or None).  :data:`FUSED_EPILOGUE` algorithms apply it
    to the accumulator before their one store; the others, and every call that needs gradients,
    apply it after the convolution (see :mod:`._epilogue`).
    """
    _check_conv_tensors(input, weight, bias, (3, 4))
    if input.dim() == 3:
        if residual is not None:
            _common.check_tensor(residual, "residual", ndim=3)
            residual = residual.unsqueeze(0)
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, algorithm=algorithm,
                      input_precision=input_precision, config=config, activation=activation, residual=residual,
                      scale=scale, shift=shift).squeeze(0)
    _common.check_input_precision(input_precision)
    empty = input.shape[0] == 0 or input.shape[1] == 0
    make = ConvGeometry.from_shapes
    geom = (_geometry_of_empty(make, input.shape, weight.shape, stride, padding, dilation, groups) if empty
            else make(input.shape, weight.shape, stride, padding, dilation, groups))
    if bias is not None and bias.shape[0] != geom.k:
        raise ValueError(f"bias must have shape ({geom.k},), got {tuple(bias.shape)}")
    k = geom.k if input.shape[1] else 0  # torch: no input channels, no output channels
    epi = make_epilogue(activation, residual, scale, shift, input, (input.shape[0], k, geom.p, geom.q))
    if empty:
        if algorithm != "auto":
            algorithm_for(algorithm, geom, input.dtype)
        out = _common.empty_output((input.shape[0], k, geom.p, geom.q), input)
        return epi.apply(_empty_with_grad(out, input, weight, bias))
    choice = resolve_conv2d(input, weight, bias, geom, algorithm=algorithm, config=config,
                            input_precision=input_precision)
    algo = BY_NAME[choice.algorithm]

    def forward(x, w, b, **fused):
        return algo.launch(x, w, b, geom, input_precision=input_precision, config=choice.config, **fused)

    if _common.needs_grad(input, weight, bias, *epi.tensors()):
        # the epilogue as torch ops over the convolution's Function: every gradient has its path
        return epi.apply(grad.Conv2dFunction.apply(input, weight, bias, geom, input_precision, forward))
    if epi.active and algo.name in FUSED_EPILOGUE:
        return forward(input, weight, bias, epilogue=epi)
    return epi.apply(forward(input, weight, bias))


def _empty_with_grad(out: torch.Tensor, *tensors) -> torch.Tensor:
    """An empty result that still joins the graph: every gradient of an empty output is zero,
    and autograd should say so rather than find no path (torch's behaviour)."""
    if not _common.needs_grad(*tensors):
        return out
    return out + sum(t.sum() * 0 for t in tensors if t is not None)


def plan_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                algorithm: str = "auto", input_precision: str = "ieee", config=None) -> ConvPlan:
    """:func:`conv2d`'s one-time work now, its kernel launches later (:class:`ConvPlan`): for
    timing kernels alone.  Takes batched, non-empty input (conv2d takes the other forms)."""
    _check_conv_tensors(input, weight, bias, (4,))
    _common.check_input_precision(input_precision)
    if input.shape[0] == 0 or input.shape[1] == 0:
        raise ValueError(f"plan_conv2d needs a non-empty batch and channels, got input shape {tuple(input.shape)}")
    geom = ConvGeometry.from_shapes(input.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None and bias.shape[0] != geom.k:
        raise ValueError(f"bias must have shape ({geom.k},), got {tuple(bias.shape)}")
    choice = resolve_conv2d(input, weight, bias, geom, algorithm=algorithm, config=config,
                            input_precision=input_precision)
    algo = BY_NAME[choice.algorithm]
    launches, out = algo.plan(input, weight, bias, geom, input_precision=input_precision, config=choice.config)
    return ConvPlan(algo.name, choice.config_name, tuple(launches), out)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto", input_precision: str = "ieee", config=None) -> torch.Tensor:
    """``torch.nn.functional.conv1d``: a 2-D convolution over an (N, C, 1, L) view; unbatched
    ``(C, L)`` and empty inputs as :func:`conv2d`."""
    _check_conv_tensors(input, weight, bias, (2, 3))
    if input.dim() == 2:
        return conv1d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, algorithm=algorithm,
                      input_precision=input_precision, config=config).squeeze(0)
    empty = input.shape[0] == 0 or input.shape[1] == 0
    make = ConvGeometry.from_shapes_1d
    geom = (_geometry_of_empty(make, input.shape, weight.shape, stride, padding, dilation, groups) if empty
            else make(input.shape, weight.shape, stride, padding, dilation, groups))
    padding2d = padding if isinstance(padding, str) else (0, geom.padding[2])
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, geom.stride[1]), padding2d,
                 (1, geom.dilation[1]), groups, algorithm=algorithm, input_precision=input_precision, config=config)
    return out.squeeze(2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm: str = "auto", input_precision: str = "ieee",
                     config=None) -> torch.Tensor:
    """``torch.nn.functional.conv_transpose2d`` by output-phase (sub-pixel) decomposition.

    ``config``: None (heuristic) or one of ``conv_configs("phase")`` (object or name); unbatched
    ``(C, H, W)`` input and an empty batch as :func:`conv2d`.
    """
    _common.check_tensor(input, "input")
    if input.dim() == 3:
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation, algorithm=algorithm, input_precision=input_precision,
                                config=config).squeeze(0)
    _common.check_tensor(input, "input", ndim=4)
    _common.check_tensor(weight, "weight", ndim=4)
    _common.check_same(input, "input", weight, "weight")
    empty = input.shape[0] == 0
    shape = (1, *input.shape[1:]) if empty else input.shape
    geom = ConvTransposeGeometry.from_shapes(shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if bias is not None:
        _common.check_vector(bias, "bias", geom.k, input)
        _common.check_same(input, "input", bias, "bias")
    _common.check_input_precision(input_precision)
    if algorithm not in ("auto",) + CONV_TRANSPOSE2D_ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {CONV_TRANSPOSE2D_ALGORITHMS}, got {algorithm!r}")
    if isinstance(config, str):
        if config in ("heuristic", "tune"):
            if config == "tune":
                _warn_once("conv_transpose2d(config='tune') is not tuned yet; using the heuristic config")
            config = None
        else:
            named = {c.name: c for c in transpose.configs(input.dtype)}
            if config not in named:
                raise ValueError(f"config={config!r} is not a phase config; choose one of {list(named)}")
            config = named[config]
    if empty:
        return _empty_with_grad(_common.empty_output((0, geom.k, geom.p, geom.q), input), input, weight, bias)

    def forward(x, w, b):
        return transpose.launch(x, w, b, geom, input_precision=input_precision, config=config)

    if _common.needs_grad(input, weight, bias):
        return grad.ConvTranspose2dFunction.apply(input, weight, bias, geom, input_precision, forward,
                                                  _conv2d_of(input_precision))
    return forward(input, weight, bias)


def _conv2d_of(input_precision: str) -> Callable:
    """A validated-geometry conv2d with the ``auto`` algorithm (the input gradient of a
    transposed convolution)."""
    def run(x, weight, geom: ConvGeometry) -> torch.Tensor:
        choice = resolve_conv2d(x, weight, None, geom, algorithm="auto", input_precision=input_precision)
        return BY_NAME[choice.algorithm].launch(x, weight, None, geom, input_precision=input_precision,
                                                config=choice.config)
    return run
