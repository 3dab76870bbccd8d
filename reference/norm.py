"""Normalization references in float64, written as the textbook formulas PyTorch implements.

``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance of the reduced
axes.  What differs between the operators is only which axes are reduced:

* ``batch_norm``:    per channel over (N, *spatial); in training the running statistics are
  updated in place as ``(1 - momentum) * running + momentum * batch`` with the *unbiased*
  batch variance, exactly as PyTorch does; in evaluation the running statistics normalize.
* ``instance_norm``: per (n, c) over the spatial axes; running statistics, when given, are
  updated with the batch average of the per-instance mean and unbiased variance.
* ``group_norm``:    per (n, group) over (C / num_groups, *spatial); affine per channel.
* ``layer_norm``:    per leading index over the trailing ``normalized_shape``; affine per element.

Running statistics are updated in place: a NumPy array is written with ``np.copyto``, a torch
tensor with ``copy_`` (no torch import here), so callers see the same side effect as PyTorch's.
"""

from __future__ import annotations

import numpy as np

from .conv import as_f64

__all__ = ["batch_norm", "layer_norm", "instance_norm", "group_norm", "batch_norm_backward", "layer_norm_backward",
           "instance_norm_backward", "group_norm_backward"]


def _vector(value, name: str, length: int):
    if value is None:
        return None
    v = as_f64(value, name)
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {v.shape}")
    return v


def _affine(y: np.ndarray, weight, bias, c: int) -> np.ndarray:
    shape = (1, c) + (1,) * (y.ndim - 2)
    w, b = _vector(weight, "weight", c), _vector(bias, "bias", c)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y


def _moments(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, biased variance) over ``axes``, kept as broadcastable dimensions (two-pass)."""
    mean = x.mean(axis=axes, keepdims=True)
    return mean, ((x - mean) ** 2).mean(axis=axes, keepdims=True)


def _store(target, value: np.ndarray, name: str) -> None:
    """Write ``value`` into ``target`` in place (NumPy array or torch tensor)."""
    if hasattr(target, "copy_") and hasattr(target, "new_tensor"):
        target.copy_(target.new_tensor(value))
    elif isinstance(target, np.ndarray) and target.flags.writeable:
        np.copyto(target, value, casting="unsafe")
    else:
        raise TypeError(f"{name} must be a writeable NumPy array or a tensor to update in place, "
                        f"got {type(target).__name__}")


def _check_momentum_eps(momentum, eps) -> None:
    if not isinstance(momentum, (int, float)) or isinstance(momentum, bool):
        raise TypeError(f"momentum must be a float, got {momentum!r}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise ValueError(f"eps must be a non-negative float, got {eps!r}")


def _update_running(running_mean, running_var, mean, unbiased_var, momentum) -> None:
    c = mean.shape[0]
    rm, rv = _vector(running_mean, "running_mean", c), _vector(running_var, "running_var", c)
    if rm is not None:
        _store(running_mean, (1 - momentum) * rm + momentum * mean, "running_mean")
    if rv is not None:
        _store(running_var, (1 - momentum) * rv + momentum * unbiased_var, "running_var")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> np.ndarray:
    """``torch.nn.functional.batch_norm`` in float64 (updates running stats in place when training)."""
    x = as_f64(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input must be at least 2-D (N, C, *), got shape {x.shape}")
    _check_momentum_eps(momentum, eps)
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if training:
        count = x.size // c
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
        _vector(running_mean, "running_mean", c), _vector(running_var, "running_var", c)
        mean, var = _moments(x, axes)
        _update_running(running_mean, running_var, mean.reshape(c), var.reshape(c) * count / (count - 1), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var must be given in evaluation mode (training=False)")
        mean = _vector(running_mean, "running_mean", c).reshape(bshape)
        var = _vector(running_var, "running_var", c).reshape(bshape)
    return _affine((x - mean) / np.sqrt(var + eps), weight, bias, c)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5) -> np.ndarray:
    """``torch.nn.functional.instance_norm`` in float64 for (N, C, *spatial) input."""
    x = as_f64(input, "input")
    if x.ndim < 3:
        raise ValueError(f"input must be at least 3-D (N, C, *spatial), got shape {x.shape}")
    _check_momentum_eps(momentum, eps)
    n, c = x.shape[:2]
    spatial = x.size // (n * c)
    axes = tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        if spatial <= 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {x.shape}")
        mean, var = _moments(x, axes)
        per_mean = mean.reshape(n, c).mean(axis=0)
        per_var = (var.reshape(n, c) * spatial / (spatial - 1)).mean(axis=0)
        _update_running(running_mean, running_var, per_mean, per_var, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var must be given when use_input_stats=False")
        mean = _vector(running_mean, "running_mean", c).reshape(bshape)
        var = _vector(running_var, "running_var", c).reshape(bshape)
    return _affine((x - mean) / np.sqrt(var + eps), weight, bias, c)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5) -> np.ndarray:
    """``torch.nn.functional.group_norm`` in float64 for (N, C, *) input."""
    x = as_f64(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input must be at least 2-D (N, C, *), got shape {x.shape}")
    _check_momentum_eps(0.0, eps)
    n, c = x.shape[:2]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide the number of channels C={c}")
    if x.size // num_groups == 1:  # PyTorch's check: N * C/G * spatial == 1
        raise ValueError(f"Expected more than 1 value per group, got input size {x.shape} with num_groups={num_groups}")
    xg = x.reshape(n, num_groups, -1)
    mean, var = _moments(xg, (2,))
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return _affine(y, weight, bias, c)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5) -> np.ndarray:
    """``torch.nn.functional.layer_norm`` in float64 over the trailing ``normalized_shape``."""
    x = as_f64(input, "input")
    _check_momentum_eps(0.0, eps)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"normalized_shape must be a non-empty sequence of positive ints, got {normalized_shape!r}")
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"normalized_shape={shape} does not match the trailing dimensions of input shape {x.shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean, var = _moments(x, axes)
    y = (x - mean) / np.sqrt(var + eps)
    for value, name in ((weight, "weight"), (bias, "bias")):
        if value is None:
            continue
        v = as_f64(value, name)
        if v.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {v.shape}")
        y = y * v if name == "weight" else y + v
    return y


# ----------------------------------------------------------------------------------------------
# backward: (dx, dweight, dbias) in float64.  With xhat = (x - mean) * rstd and g = dy * weight:
# from batch statistics dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) over each statistics
# group; from running statistics dx = rstd * g; dweight = sum(dy * xhat), dbias = sum(dy) over
# every element of a parameter.  dweight is None without a weight; dbias is always returned.
# ----------------------------------------------------------------------------------------------
def _grad_of(dy, xg, mean, var, eps, gamma, training: bool, stat_axes, shape):
    """dx (in ``shape``) from the grouped view ``xg`` whose ``stat_axes`` hold one group each;
    ``gamma`` is broadcastable to ``shape`` (or None); returns (dx, xhat in ``shape``)."""
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = ((xg - mean) * rstd).reshape(shape)
    g = dy * gamma if gamma is not None else dy
    if not training:
        return (g.reshape(xg.shape) * rstd).reshape(shape), xhat
    gg, xh = g.reshape(xg.shape), xhat.reshape(xg.shape)
    dx = rstd * (gg - gg.mean(axis=stat_axes, keepdims=True) - xh * (gg * xh).mean(axis=stat_axes, keepdims=True))
    return dx.reshape(shape), xhat


def _channel_grads(dy, xhat, weight, c):
    axes = (0,) + tuple(range(2, dy.ndim))
    dw = (dy * xhat).sum(axis=axes) if weight is not None else None
    return dw, dy.sum(axis=axes)


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, training=False, eps=1e-5):
    """(dx, dweight, dbias) of ``batch_norm`` (statistics from the batch when ``training``)."""
    x, dy = as_f64(input, "input"), as_f64(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(f"grad_output must have the input's shape {x.shape}, got {dy.shape}")
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        mean, var = _moments(x, axes)
    else:
        mean = _vector(running_mean, "running_mean", c).reshape(bshape)
        var = _vector(running_var, "running_var", c).reshape(bshape)
    w = _vector(weight, "weight", c)
    dx, xhat = _grad_of(dy, x, mean, var, eps, w.reshape(bshape) if w is not None else None, training, axes, x.shape)
    return (dx, *_channel_grads(dy, xhat, weight, c))


def instance_norm_backward(grad_output, input, running_mean=None, running_var=None, weight=None,
                           use_input_stats=True, eps=1e-5):
    """(dx, dweight, dbias) of ``instance_norm``."""
    x, dy = as_f64(input, "input"), as_f64(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(f"grad_output must have the input's shape {x.shape}, got {dy.shape}")
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    axes = tuple(range(2, x.ndim))
    if use_input_stats:
        mean, var = _moments(x, axes)
    else:
        mean = _vector(running_mean, "running_mean", c).reshape(bshape)
        var = _vector(running_var, "running_var", c).reshape(bshape)
    w = _vector(weight, "weight", c)
    dx, xhat = _grad_of(dy, x, mean, var, eps, w.reshape(bshape) if w is not None else None, use_input_stats,
                        axes, x.shape)
    return (dx, *_channel_grads(dy, xhat, weight, c))


def group_norm_backward(grad_output, input, num_groups, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of ``group_norm``."""
    x, dy = as_f64(input, "input"), as_f64(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(f"grad_output must have the input's shape {x.shape}, got {dy.shape}")
    n, c = x.shape[:2]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0 or c % num_groups:
        raise ValueError(f"num_groups must be a positive int dividing C={c}, got {num_groups!r}")
    xg = x.reshape(n, num_groups, -1)
    mean, var = _moments(xg, (2,))
    w = _vector(weight, "weight", c)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    dx, xhat = _grad_of(dy, xg, mean, var, eps, w.reshape(bshape) if w is not None else None, True, (2,), x.shape)
    return (dx, *_channel_grads(dy, xhat, weight, c))


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of ``layer_norm`` (dweight/dbias shaped like ``normalized_shape``)."""
    x, dy = as_f64(input, "input"), as_f64(grad_output, "grad_output")
    if dy.shape != x.shape:
        raise ValueError(f"grad_output must have the input's shape {x.shape}, got {dy.shape}")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"normalized_shape={shape} does not match the trailing dimensions of input shape {x.shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean, var = _moments(x, axes)
    w = as_f64(weight, "weight") if weight is not None else None
    if w is not None and w.shape != shape:
        raise ValueError(f"weight must have shape {shape}, got {w.shape}")
    dx, xhat = _grad_of(dy, x, mean, var, eps, w, True, axes, x.shape)
    lead = tuple(range(x.ndim - len(shape)))
    return dx, ((dy * xhat).sum(axis=lead) if w is not None else None), dy.sum(axis=lead)
