"""How to call each operator of a case: its inputs, and one call that works for three libraries.

``kernels``, ``torch.nn.functional`` and ``reference`` share ``torch.nn.functional``'s names and
argument names, so :func:`call` builds one keyword call from the case's geometry and sends it to
whichever library a backend names.  Inputs are drawn from a seeded generator in float64; the
runner rounds them to the cell's dtype and computes the reference from the rounded values.
"""

from __future__ import annotations

import copy
import functools
import math
import time
import zlib

import numpy as np

from .shapes import Case

#: numpy-backend conv2d algorithms -> (reference function name, extra keyword arguments)
REFERENCE_ALGORITHMS = {
    "direct": ("conv2d", {}),
    "im2col": ("conv2d_im2col", {}),
    "winograd_f2": ("conv2d_winograd", {"m": 2}),
    "winograd_f4": ("conv2d_winograd", {"m": 4}),
    "fft": ("conv2d_fft", {}),
}
#: inputs that are 4-D feature maps or filters (converted to channels_last for the nhwc layout)
SPATIAL_INPUTS = ("input", "weight", "grad_output")
EPS = 1e-5
MOMENTUM = 0.1


def case_seed(case: Case, base: int = 0) -> int:
    """A stable seed per (op, shape): the same inputs on every run and machine."""
    return (zlib.crc32(f"{case.op}:{case.shape}".encode()) + base) % (2**32)


def make_inputs(case: Case, seed: int = 0) -> dict[str, np.ndarray | None]:
    """float64 inputs for ``case``: N(0, 1) data, filters scaled by 1/sqrt(fan-in)."""
    rng = np.random.default_rng(case_seed(case, seed))
    g = case.geom
    normal = rng.standard_normal
    x = normal((g.n, g.c, g.h, g.w))
    if case.op == "conv2d":
        w = normal((g.k, g.c_per_group, g.r, g.s)) / np.sqrt(g.reduction_length)
        if case.mode == "fwd":
            return {"input": x, "weight": w, "bias": normal(g.k)}
        # the gradient arriving from above; dgrad and wgrad take no bias
        out = {"input": x, "weight": w, "bias": normal(g.k) if case.mode == "fwd+bwd" else None,
               "grad_output": normal((g.n, g.k, g.p, g.q))}
        return out
    if case.op == "conv_transpose2d":
        w = normal((g.c, g.k_per_group, g.r, g.s)) / np.sqrt(g.reduction_length)
        return {"input": x, "weight": w, "bias": normal(g.k)}
    if case.family == "attack":
        return attack_inputs(case, rng)
    if case.family == "network":  # the weights are the network's own (network_model), the same for all
        if case.mode == "fwd+bwd":  # a training step: the gradient arriving at the logits
            return {"input": x, "grad_output": normal((g.n, g.classes))}
        return {"input": x}
    if case.family == "pool":
        return {"input": x}
    if case.op == "batch_norm":
        return {"input": 3.0 * x + 1.0, "running_mean": normal(g.c), "running_var": rng.uniform(0.5, 2.0, g.c),
                "weight": rng.uniform(0.5, 1.5, g.c), "bias": normal(g.c)}
    affine = (g.c, g.h, g.w) if case.op == "layer_norm" else (g.c,)
    return {"input": 3.0 * x + 1.0, "weight": rng.uniform(0.5, 1.5, affine), "bias": normal(affine)}


def call(lib, case: Case, t: dict, **extra):
    """``lib.<op>(...)`` for ``case`` with the tensors/arrays ``t`` (and e.g. ``algorithm=``)."""
    g = case.geom
    op = case.op
    if case.family == "attack":
        return attack_runner(lib, case, t)()
    if case.family == "network":
        return network_runner(lib, case, t, **extra)()
    if op == "conv2d" and case.mode != "fwd":
        return call_conv_mode(lib, case, t, **extra)
    if op == "conv2d":
        return lib.conv2d(t["input"], t["weight"], t["bias"], stride=g.stride, padding=g.symmetric_padding,
                          dilation=g.dilation, groups=g.groups, **extra)
    if op == "conv_transpose2d":
        return lib.conv_transpose2d(t["input"], t["weight"], t["bias"], stride=g.stride, padding=g.padding,
                                    output_padding=g.output_padding, groups=g.groups, dilation=g.dilation,
                                    **extra)
    if op == "max_pool2d":
        return lib.max_pool2d(t["input"], g.kernel, stride=g.stride, padding=g.padding, dilation=g.dilation,
                              ceil_mode=g.ceil_mode, **extra)
    if op == "avg_pool2d":
        if g.dilation != (1, 1):
            raise ValueError(f"avg_pool2d has no dilation, got {g.dilation}")
        return lib.avg_pool2d(t["input"], g.kernel, stride=g.stride, padding=g.padding, ceil_mode=g.ceil_mode,
                              count_include_pad=case.count_include_pad, **extra)
    if op == "adaptive_avg_pool2d":
        return lib.adaptive_avg_pool2d(t["input"], (g.out_h, g.out_w), **extra)
    if op == "batch_norm":
        return lib.batch_norm(t["input"], t["running_mean"], t["running_var"], weight=t["weight"], bias=t["bias"],
                              training=case.training, momentum=MOMENTUM, eps=EPS, **extra)
    if op == "layer_norm":
        return lib.layer_norm(t["input"], (g.c, g.h, g.w), weight=t["weight"], bias=t["bias"], eps=EPS, **extra)
    if op == "instance_norm":
        return lib.instance_norm(t["input"], weight=t["weight"], bias=t["bias"], use_input_stats=True,
                                 momentum=MOMENTUM, eps=EPS, **extra)
    if op == "group_norm":
        return lib.group_norm(t["input"], g.num_groups, weight=t["weight"], bias=t["bias"], eps=EPS, **extra)
    raise ValueError(f"unknown op {op!r}")


def call_conv_mode(lib, case: Case, t: dict, **extra):
    """A conv2d case's backward modes through ``lib``'s torch.nn.grad-style names
    (``conv2d_input_grad``, ``conv2d_weight_grad``): ``kernels``, ``reference``, or
    :data:`TORCH_GRAD` for torch.  ``fwd+bwd`` returns ``(y, dX, dW, db)``: through autograd on
    tensors, through the references' gradient functions on arrays."""
    g = case.geom
    geo = dict(stride=g.stride, padding=g.symmetric_padding, dilation=g.dilation, groups=g.groups)
    precision = {k: v for k, v in extra.items() if k == "input_precision"}
    x, w, dy = t["input"], t["weight"], t["grad_output"]
    if case.mode == "dgrad":
        return lib.conv2d_input_grad(tuple(x.shape), w, dy, **geo, **precision)
    if case.mode == "wgrad":
        return lib.conv2d_weight_grad(x, tuple(w.shape), dy, **geo, **precision)
    if isinstance(x, np.ndarray):  # the float64 reference of a training step
        y = lib.conv2d(x, w, t["bias"], **geo)
        return (y, lib.conv2d_input_grad(x.shape, w, dy, **geo), lib.conv2d_weight_grad(x, w.shape, dy, **geo),
                dy.sum(axis=(0, 2, 3)))
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    leaves = [v.detach().requires_grad_(True) for v in (x, w, t["bias"])]
    with torch.enable_grad():
        y = lib.conv2d(*leaves, **geo, **extra)
        grads = torch.autograd.grad(y, leaves, dy)
    return (y.detach(), *grads)


class _TorchGrad:
    """torch's side of the backward modes, under the names ``kernels`` and ``reference`` use."""

    @staticmethod
    def conv2d(*args, **kwargs):
        import torch.nn.functional as F  # lazily: plan is imported by records and the reports

        return F.conv2d(*args, **kwargs)

    @staticmethod
    def conv2d_input_grad(*args, **kwargs):
        import torch  # lazily: plan is imported by records and the reports, which need no torch

        return torch.nn.grad.conv2d_input(*args, **kwargs)

    @staticmethod
    def conv2d_weight_grad(*args, **kwargs):
        import torch  # lazily: plan is imported by records and the reports, which need no torch

        return torch.nn.grad.conv2d_weight(*args, **kwargs)


#: what the torch backend calls for conv2d's backward modes (cuDNN's dgrad/wgrad on the GPU)
TORCH_GRAD = _TorchGrad()


# ----------------------------------------------------------------------------------------------
# attacks: FGSM and PGD through convbench.models.small_cnn
# ----------------------------------------------------------------------------------------------
def small_cnn_parameters(g) -> dict[str, tuple]:
    """The ``state_dict`` shapes of ``small_cnn(g.c, g.classes, g.width)`` (its Sequential indices)."""
    w = g.width
    return {"0.weight": (w, g.c, 3, 3), "1.weight": (w,), "1.bias": (w,), "1.running_mean": (w,),
            "1.running_var": (w,), "4.weight": (2 * w, w, 3, 3), "5.weight": (2 * w,), "5.bias": (2 * w,),
            "5.running_mean": (2 * w,), "5.running_var": (2 * w,), "9.weight": (g.classes, 8 * w),
            "9.bias": (g.classes,)}


def attack_inputs(case: Case, rng) -> dict:
    """Images in [0, 1), labels (as floats: every input is rounded to the cell dtype), a PGD
    start drawn once (so every implementation starts at the same point) and the network's
    parameters (filters scaled by 1/sqrt(fan-in), batch-norm statistics near the identity)."""
    g = case.geom
    out = {"input": rng.uniform(0.0, 1.0, (g.n, g.c, g.h, g.w)),
           "target": rng.integers(0, g.classes, g.n).astype(np.float64)}
    if case.op == "pgd":
        out["start"] = rng.uniform(0.0, 1.0, (g.n, g.c, g.h, g.w))
    for name, shape in small_cnn_parameters(g).items():
        if name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean") or (name.endswith("bias")):
            out[name] = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:  # batch-norm scale
            out[name] = rng.uniform(0.5, 1.5, shape)
        else:
            out[name] = rng.standard_normal(shape) / np.sqrt(int(np.prod(shape[1:])))
    return out


#: the library a backend hands to :func:`call` -> the network's ``algorithm=`` for an attack
ATTACK_ALGORITHM = {"convbench.kernels": "auto", "torch.nn.functional": "torch", "convbench.reference": "torch"}


def attack_runner(lib, case: Case, t: dict):
    """The attack of ``case`` as a zero-argument callable (the network is built once, here):
    through convbench's kernels for ``kernels``, through torch for ``torch.nn.functional``, and
    for ``reference`` the float64 attack by torch autograd on the CPU (there is no NumPy autograd:
    this is the one reference that is not NumPy), returned as an array."""
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    from convbench import attacks, models  # lazily: the attack cells only

    g = case.geom
    name = getattr(lib, "__name__", "")
    if name not in ATTACK_ALGORITHM:
        raise ValueError(f"no attack runs through {name or lib!r}")
    arrays = isinstance(t["input"], np.ndarray)
    tensors = {k: (torch.from_numpy(v) if arrays else v) for k, v in t.items() if v is not None}
    x = tensors["input"]
    model = models.small_cnn(g.c, g.classes, g.width, algorithm=ATTACK_ALGORITHM[name])
    state = {k: v for k, v in tensors.items() if k in small_cnn_parameters(g)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise ValueError(f"attack network parameters do not match: missing {missing}, unexpected {unexpected}")
    model = model.to(device=x.device, dtype=x.dtype).eval()
    y = tensors["target"].round().long()

    def run():
        if case.op == "fgsm":
            out = attacks.fgsm(model, x, y, g.eps)
        else:
            out = attacks.pgd(model, x, y, g.eps, g.alpha, g.steps, start=tensors["start"])
        return out.numpy() if arrays else out

    return run


# ----------------------------------------------------------------------------------------------
# whole networks: convbench.models, one forward per policy
# ----------------------------------------------------------------------------------------------
#: policies of our kernels beyond the conv algorithms: "auto" (the heuristic per layer), "tuned" (every
#: conv with algorithm="auto", config="tune": the fastest measured algorithm and config per layer, from
#: the tuning cache, tuned on a miss), "fused" (convbench.nn.fuse: eval-mode batch norm folded, epilogues)
NETWORK_POLICIES = ("auto", "tuned", "fused")
#: values per channel the last stage's batch-norm statistics are calibrated on (at least 2 images):
#: at 32x32 the last stage is 1x1, and statistics from 2 values leave channels with a near-zero
#: variance that amplifies every rounding error after them (mobilenet_v2 at 32x32 then fails an
#: fp32 check even for torch)
CALIBRATION_VALUES = 64
#: a training step's tolerance per part: this many times the error of torch's own fp32 step on the CPU
PROBE_FACTOR = 4.0
#: a training step's gradient part at most this fraction of the step's largest gradient element is
#: structurally zero (its float64 values are rounding; checked against that scale, not its own)
STRUCTURAL_ZERO = 1e-10


def calibration_images(h: int, w: int) -> int:
    """How many random images calibrate a network's batch norms at h x w (2 at 224x224, 64 at 32x32)."""
    last = math.ceil(h / 32) * math.ceil(w / 32)
    return min(CALIBRATION_VALUES, max(2, math.ceil(CALIBRATION_VALUES / last)))


@functools.lru_cache(maxsize=1)
def network_model(model: str, h: int, w: int, classes: int, seed: int):
    """``convbench.models.<model>`` in float64 on the CPU (algorithm="torch", eval mode) with
    weights drawn from ``seed`` (torchvision's initialisation) and batch-norm statistics
    calibrated on a few random images (one training-mode forward with momentum 1), so that
    every layer sees normalised activations as in a trained network.  The same for every backend."""
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    from convbench import models  # lazily: the network cells only

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = models.ZOO[model](classes, algorithm="torch").double().eval()
        calibration = torch.randn(calibration_images(h, w), 3, h, w, dtype=torch.float64)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.train()
        m.momentum = 1.0
    with torch.no_grad():
        net(calibration)
    for m in norms:
        m.eval()
        m.momentum = MOMENTUM
    return net


def network_seed(case: Case) -> int:
    """The weights' seed: the network and resolution, not the batch (the reference of a cell
    checks fewer images of the same network)."""
    g = case.geom
    return zlib.crc32(f"network:{g.model}-{g.h}x{g.w}-k{g.classes}".encode()) % (2**32)


def fallback_note(case: Case, algorithm: str, dtype) -> str:
    """Which conv layers a forced ``algorithm`` does not take (they run ``auto``), or ""."""
    if algorithm in NETWORK_POLICIES or algorithm == "vendor":
        return ""
    from convbench import kernels, models  # lazily: the network cells only

    g = case.geom
    net = network_model(g.model, g.h, g.w, g.classes, network_seed(case))
    entry = kernels.conv.BY_NAME[algorithm]
    layers = models.conv_layers(net, (1, 3, g.h, g.w))
    off = [name for name, geom in layers if entry.unsupported(geom, dtype) is not None]
    if not off:
        return ""
    return (f"{len(off)} of {len(layers)} conv layers fell back to auto ({algorithm} does not apply): "
            + ", ".join(off[:6]) + (", ..." if len(off) > 6 else ""))


def network_runner(lib, case: Case, t: dict, algorithm: str = "auto", input_precision: str = "ieee"):
    """The network cell of ``case`` as a zero-argument callable: through convbench's kernels under
    a policy (``NETWORK_POLICIES``, or a conv algorithm forced with per-layer fallback) with
    ``input_precision``, through torch eager ("vendor") or ``torch.compile`` ("compile"), or for
    ``reference`` layer by layer through the NumPy references in float64 (returns arrays).

    A forward cell returns the logits; a training step (``mode="fwd+bwd"``: forward in training
    mode with dropout off, then the backward of ``grad_output`` at the logits, no optimizer)
    returns the logits and the gradient of every parameter, in ``parameters()`` order."""
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    from convbench import models  # lazily: the network cells only
    from convbench import nn as cnn  # lazily: the network cells only

    g = case.geom
    net = network_model(g.model, g.h, g.w, g.classes, network_seed(case))
    training = case.mode == "fwd+bwd"
    x, dy = t["input"], t.get("grad_output")
    name = getattr(lib, "__name__", "")
    if name == "convbench.reference":
        arrays = isinstance(x, np.ndarray)

        def as64(a):
            return torch.from_numpy(a) if arrays else a.cpu().double()

        if training:
            return lambda: models.layers.reference_train_step(net, as64(x), as64(dy))
        ref = models.reference_network(net)

        def forward():
            with torch.no_grad():
                return ref(as64(x)).numpy()

        return forward
    if name == "convbench.kernels":
        if training and algorithm == "fused":
            raise ValueError("algorithm='fused' applies to forward cells: fuse folds eval-mode batch norm, "
                             "a training step normalises by the batch")
        # fuse works on its own copy; the norms and pools it leaves then join our kernels too
        own = cnn.fuse(net, algorithm="auto") if algorithm == "fused" else copy.deepcopy(net)
        model = cnn.convert(own, "auto" if algorithm in NETWORK_POLICIES else algorithm,
                            input_precision=input_precision, config="tune" if algorithm == "tuned" else None)
    elif name == "torch.nn.functional":
        model = copy.deepcopy(net)
    else:
        raise ValueError(f"no network runs through {name or lib!r}")
    model = model.to(device=x.device, dtype=x.dtype)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        model = model.to(memory_format=torch.channels_last)
    if training:
        models.layers.training_mode(model)
    if algorithm == "compile":
        model = torch.compile(model)
    params = list(model.parameters())

    def step():
        y = model(x)
        return (y.detach(), *torch.autograd.grad(y, params, dy))

    def forward():
        with torch.no_grad():
            return model(x)

    return step if training else forward


def tune_network(lib, run, x) -> dict:
    """Run a ``tuned`` network once before timing, so that the tuning of every conv layer the cache
    misses happens here and not in the first timed call; returns the cell's info."""
    if not lib.conv.can_tune(x):
        return {"note": f"tuned: {lib.conv.NOT_TUNED} (every layer ran its heuristic config)"}
    import torch  # lazily: plan is imported by records and the reports, which need no torch

    start = time.perf_counter()
    run()
    torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    return {"tuning_s": seconds, "note": f"every conv layer's algorithm and config from the tuning cache "
                                         f"({lib.tuning.cache_path()}); tuning the misses took {seconds:.1f} s"}


def call_reference_algorithm(reference, algorithm: str, case: Case, arrays: dict):
    """The float64 reference of one conv2d algorithm (``REFERENCE_ALGORITHMS``)."""
    if algorithm not in REFERENCE_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {tuple(REFERENCE_ALGORITHMS)}, got {algorithm!r}")
    name, kwargs = REFERENCE_ALGORITHMS[algorithm]
    fn = getattr(reference, name, None)
    if fn is None:
        raise NotImplementedError(f"reference.{name} does not exist yet")
    g = case.geom
    return fn(arrays["input"], arrays["weight"], arrays["bias"], stride=g.stride, padding=g.symmetric_padding,
              dilation=g.dilation, groups=g.groups, **kwargs)


def per_image(case: Case) -> bool:
    """Whether image i of the output depends only on image i of the input."""
    return not (case.op == "batch_norm" and case.training) and case.mode == "fwd"  # wgrad sums over images
