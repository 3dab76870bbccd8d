"""``torch.nn`` twins that run on convbench's Triton kernels.

Each class *subclasses* its ``torch.nn`` twin and adds one argument, ``algorithm``, so its
constructor arguments, parameters, buffers, ``state_dict`` keys, initialisation and ``repr`` are
torch's own, and a checkpoint of either loads into the other.  Only the computation changes:

* ``algorithm="torch"``: the ``torch.nn.functional`` call of the twin (the cuDNN baseline);
* ``"auto"`` (default): convbench's kernels with their heuristic choice;
* a convolution algorithm name (``kernels.CONV2D_ALGORITHMS``) for ``Conv1d``/``Conv2d``; where that
  algorithm does not apply to a call's geometry (Winograd on a strided layer), ``fallback``
  (default ``"auto"``) runs instead and :attr:`Conv2d.fell_back` says why; ``fallback=None`` raises.

Convolutions also take ``input_precision`` (``"ieee"``, or ``"tf32"``: fp32 operands on the tensor
cores, as cuDNN with ``allow_tf32``) and ``config`` (None: the heuristic; ``"tune"``: the tuning
cache, tuning on a miss on a GPU; or a config name of ``kernels.conv_configs``), passed to every
conv2d call; ``algorithm="torch"`` ignores both (torch's own flags decide).

Pools and norms take ``"auto"`` or ``"torch"`` (one kernel each).  Gradients flow through the
kernels' autograd Functions.  Non-zero ``padding_mode`` pads with ``torch.nn.functional.pad``
first, exactly as torch's own modules do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convbench import kernels
from convbench.kernels._common import INPUT_PRECISIONS
from convbench.kernels.conv import BY_NAME, TORCH_ACTIVATIONS
from convbench.reference.geometry import ConvGeometry

#: what ``algorithm=`` may be on a convolution module
CONV_CHOICES = ("auto", "torch", *kernels.CONV2D_ALGORITHMS)
#: ... on a transposed convolution, pool or norm module
SIMPLE_CHOICES = ("auto", "torch")


def _check_choice(value, choices, what: str) -> str:
    if value not in choices:
        raise ValueError(f"algorithm for {what} must be one of {choices}, got {value!r}")
    return value


class _Accelerated:
    """What every twin adds: the ``algorithm`` attribute, shown in ``repr``."""

    algorithm: str = "auto"
    CHOICES: tuple = SIMPLE_CHOICES

    def _set_algorithm(self, algorithm: str) -> None:
        self.algorithm = _check_choice(algorithm, self.CHOICES, type(self).__name__)

    def extra_repr(self) -> str:
        base = super().extra_repr()
        return f"{base}, algorithm={self.algorithm!r}" if base else f"algorithm={self.algorithm!r}"


class _ConvAlgorithm(_Accelerated):
    CHOICES = CONV_CHOICES
    fallback: str | None = "auto"
    #: why the last forward did not use ``algorithm`` (None when it did)
    fell_back: str | None = None
    #: conv2d's ``input_precision`` and ``config`` for every call (see the module docstring)
    input_precision: str = "ieee"
    config: object = None

    def _set_fallback(self, fallback) -> None:
        if fallback is not None:
            _check_choice(fallback, ("auto", *kernels.CONV2D_ALGORITHMS), f"{type(self).__name__} fallback")
        self.fallback = fallback

    def _set_launch(self, input_precision: str, config) -> None:
        if input_precision not in INPUT_PRECISIONS:
            raise ValueError(f"input_precision for {type(self).__name__} must be one of {INPUT_PRECISIONS}, "
                             f"got {input_precision!r}")
        if config is not None and not isinstance(config, str) and not hasattr(config, "name"):
            raise ValueError(f"config for {type(self).__name__} must be None, 'heuristic', 'tune', a config name "
                             f"or a config object, got {config!r}")
        self.input_precision, self.config = input_precision, config

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.input_precision != "ieee":
            text += f", input_precision={self.input_precision!r}"
        if self.config is not None:
            text += f", config={getattr(self.config, 'name', self.config)!r}"
        return text

    def _algorithm_for(self, make_geometry, dtype: torch.dtype) -> str:
        """``algorithm``, or ``fallback`` where it does not apply to this call's geometry."""
        self.fell_back = None
        if self.algorithm == "auto":
            return "auto"
        try:
            geom = make_geometry()
        except ValueError:
            return self.algorithm  # a bad geometry: the kernel's own error names the argument
        reason = BY_NAME[self.algorithm].unsupported(geom, dtype)
        if reason is None:
            return self.algorithm
        if self.fallback is None:
            raise ValueError(f"algorithm={self.algorithm!r} does not apply to {geom}: {reason} "
                             f"(give fallback='auto' to run another algorithm there)")
        self.fell_back = f"{self.algorithm} -> {self.fallback}: {reason}"
        return self.fallback


class Conv2d(_ConvAlgorithm, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` + ``algorithm`` (and ``fallback``) on convbench's conv2d."""

    def __init__(self, *args, algorithm: str = "auto", fallback: str | None = "auto", input_precision: str = "ieee",
                 config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)
        self._set_fallback(fallback)
        self._set_launch(input_precision, config)

    def _conv_forward(self, input, weight, bias, *, activation=None, residual=None):
        """The convolution, with conv2d's epilogue ``act(conv + residual)`` when asked (fused in the
        kernel; for ``algorithm="torch"`` torch ops after torch's conv)."""
        if self.algorithm == "torch":
            y = super()._conv_forward(input, weight, bias)
            return TORCH_ACTIVATIONS[activation](y if residual is None else y + residual)
        padding = self.padding
        if self.padding_mode != "zeros":
            input, padding = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0
        batched = input if input.dim() == 4 else input.unsqueeze(0)
        algorithm = self._algorithm_for(lambda: ConvGeometry.from_shapes(
            batched.shape, weight.shape, self.stride, padding, self.dilation, self.groups), input.dtype)
        return kernels.conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                              algorithm=algorithm, input_precision=self.input_precision, config=self.config,
                              activation=activation, residual=residual)


class Conv1d(_ConvAlgorithm, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` + ``algorithm`` (and ``fallback``) on convbench's conv1d."""

    def __init__(self, *args, algorithm: str = "auto", fallback: str | None = "auto", input_precision: str = "ieee",
                 config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)
        self._set_fallback(fallback)
        self._set_launch(input_precision, config)

    def _conv_forward(self, input, weight, bias):
        if self.algorithm == "torch":
            return super()._conv_forward(input, weight, bias)
        padding = self.padding
        if self.padding_mode != "zeros":
            input, padding = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0
        batched = input if input.dim() == 3 else input.unsqueeze(0)
        algorithm = self._algorithm_for(lambda: ConvGeometry.from_shapes_1d(
            batched.shape, weight.shape, self.stride, padding, self.dilation, self.groups), input.dtype)
        return kernels.conv1d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                              algorithm=algorithm, input_precision=self.input_precision, config=self.config)


class ConvTranspose2d(_Accelerated, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` + ``algorithm`` ("auto": the phase kernel, or "torch")."""

    CHOICES = ("auto", "phase", "torch")

    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input, output_size=None):
        if self.algorithm == "torch":
            return super().forward(input, output_size)
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return kernels.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                        self.groups, self.dilation, algorithm=self.algorithm)


class BatchNorm2d(_Accelerated, torch.nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` + ``algorithm``; running statistics and ``num_batches_tracked``
    follow torch's rules (momentum=None: cumulative average)."""

    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return kernels.batch_norm(input, self.running_mean if keep else None, self.running_var if keep else None,
                                  self.weight, self.bias, use_batch, factor, self.eps)


class InstanceNorm2d(_Accelerated, torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` + ``algorithm`` (unbatched input handled by torch's forward)."""

    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def _apply_instance_norm(self, input):
        if self.algorithm == "torch":
            return super()._apply_instance_norm(input)
        return kernels.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                     self.training or not self.track_running_stats,
                                     self.momentum if self.momentum is not None else 0.0, self.eps)


class LayerNorm(_Accelerated, torch.nn.LayerNorm):
    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        return kernels.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class GroupNorm(_Accelerated, torch.nn.GroupNorm):
    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        return kernels.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class MaxPool2d(_Accelerated, torch.nn.MaxPool2d):
    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        return kernels.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                                  self.return_indices)


class AvgPool2d(_Accelerated, torch.nn.AvgPool2d):
    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        return kernels.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                  self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(_Accelerated, torch.nn.AdaptiveAvgPool2d):
    def __init__(self, *args, algorithm: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self._set_algorithm(algorithm)

    def forward(self, input):
        if self.algorithm == "torch":
            return super().forward(input)
        return kernels.adaptive_avg_pool2d(input, self.output_size)


#: torch.nn class -> its twin: the one explicit list :func:`convert` walks by
TWINS: dict[type, type] = {
    torch.nn.Conv1d: Conv1d,
    torch.nn.Conv2d: Conv2d,
    torch.nn.ConvTranspose2d: ConvTranspose2d,
    torch.nn.BatchNorm2d: BatchNorm2d,
    torch.nn.InstanceNorm2d: InstanceNorm2d,
    torch.nn.LayerNorm: LayerNorm,
    torch.nn.GroupNorm: GroupNorm,
    torch.nn.MaxPool2d: MaxPool2d,
    torch.nn.AvgPool2d: AvgPool2d,
    torch.nn.AdaptiveAvgPool2d: AdaptiveAvgPool2d,
}
