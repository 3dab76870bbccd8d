"""The named suites: real network layers, and the small suites a CPU can run.

Convolution layers of ResNet-50, VGG-16, MobileNetV2, EfficientNet-B0, DeepBench and DeepLabv3
(ASPP) are transcribed in ``conv_shapes.csv`` next to this file (columns: net, layer, N, C, H, W,
K, R, S, stride, pad, dil, groups, P, Q, GFLOP, AI_fp16; P, Q and GFLOP are checked against the
geometry by the tests).  Transposed-convolution, pooling and normalization layers are listed below
with their sources.  ``quick`` (the default) and ``seed`` are small enough for the Triton
interpreter.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import replace
from pathlib import Path

from convbench.reference.geometry import ConvGeometry, ConvTransposeGeometry, NormGeometry, PoolGeometry

from .shapes import NETWORK_SOURCE, NETWORKS, AdaptivePoolGeometry, AttackGeometry, Case, NetworkGeometry, Suite

SHAPES_CSV = Path(__file__).with_name("conv_shapes.csv")

#: suite name -> (net column of conv_shapes.csv, description)
CSV_SUITES = {
    "resnet50": ("resnet50", "ResNet-50 convolutions, batch 32 (He et al., CVPR 2016)"),
    "vgg16": ("vgg16", "VGG-16 3x3 convolutions, batch 32 (Simonyan & Zisserman, ICLR 2015)"),
    "mobilenet_v2": ("mbv2", "MobileNetV2 stem, depthwise and pointwise layers, batch 32 (Sandler et al., CVPR 2018)"),
    "efficientnet_b0": ("effb0", "EfficientNet-B0 depthwise 5x5 layers, batch 32 (Tan & Le, ICML 2019)"),
    "deepbench": ("deepbench", "Baidu DeepBench inference/training convolutions (github.com/baidu-research/DeepBench)"),
    "dilated": ("deeplabv3",
                "DeepLabv3 ASPP dilated 3x3 convolutions, output stride 8 (Chen et al., arXiv:1706.05587)"),
}


def conv(n, c, h, w, k, r, s, stride=1, pad=0, dil=1, groups=1, label="", source="") -> Case:
    geom = ConvGeometry(n, c, h, w, k, r, s, (stride, stride), (pad,) * 4, (dil, dil), groups)
    return Case("conv2d", geom, label, source)


def tconv(n, c, h, w, k, r, s, stride=1, pad=0, out_pad=0, label="", source="") -> Case:
    geom = ConvTransposeGeometry(n, c, h, w, k, r, s, (stride, stride), (pad, pad), (out_pad, out_pad))
    return Case("conv_transpose2d", geom, label, source)


def pool(op, n, c, h, w, k, stride=None, pad=0, ceil=False, count_include_pad=True, label="", source="") -> Case:
    stride = k if stride is None else stride
    geom = PoolGeometry(n, c, h, w, (k, k), (stride, stride), (pad, pad), (1, 1), ceil)
    return Case(op, geom, label, source, count_include_pad=count_include_pad)


def gap(n, c, h, w, label="", source="") -> Case:
    return Case("adaptive_avg_pool2d", AdaptivePoolGeometry(n, c, h, w, 1, 1), label, source)


def attack(op, n, c, h, w, width, eps, steps=1, alpha=None, label="", source="") -> Case:
    """FGSM (one step of eps) or PGD (``steps`` steps of ``alpha``, default eps/4) on small_cnn."""
    alpha = eps if op == "fgsm" else (eps / 4 if alpha is None else alpha)
    return Case(op, AttackGeometry(n, c, h, w, width, 10, steps, eps, alpha), label, source)


def norm(op, n, c, h, w, groups=1, training=False, label="", source="") -> Case:
    kind = op.replace("_norm", "")
    return Case(op, NormGeometry(kind, n, c, h, w, groups), label, source, training=training)


#: net column of conv_shapes.csv -> the convbench.models network its rows come from (for counts)
CSV_NETWORKS = {"resnet50": "resnet50", "mbv2": "mobilenet_v2", "effb0": "efficientnet_b0"}


@functools.lru_cache(maxsize=None)
def csv_cases(net: str) -> tuple[Case, ...]:
    """The rows of ``conv_shapes.csv`` for one network, in file order; where the network is in
    :data:`CSV_NETWORKS`, each row's ``count`` is how often its geometry occurs in one forward of
    that network at the row's batch and 224 x 224 (a row the network does not have is an error)."""
    cases = _csv_rows(net)
    if net not in CSV_NETWORKS:
        return cases
    from convbench import models  # lazily: torch; the catalog is imported by the reports

    batch = cases[0].geom.n
    counts = {g: n for g, n, _ in models.distinct_conv_layers(models.ZOO[CSV_NETWORKS[net]](), (batch, 3, 224, 224))}
    missing = [c.label for c in cases if c.geom not in counts]
    if missing:
        raise ValueError(f"{SHAPES_CSV.name}: rows {missing} of {net} are not layers of {CSV_NETWORKS[net]}")
    return tuple(replace(c, count=counts[c.geom]) for c in cases)


def _csv_rows(net: str) -> tuple[Case, ...]:
    cases = []
    with SHAPES_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["net"] != net:
                continue
            v = {key: int(row[key]) for key in ("N", "C", "H", "W", "K", "R", "S", "stride", "pad", "dil", "groups")}
            cases.append(conv(v["N"], v["C"], v["H"], v["W"], v["K"], v["R"], v["S"], v["stride"], v["pad"],
                              v["dil"], v["groups"], label=row["layer"], source=net))
    if not cases:
        raise ValueError(f"no rows for net {net!r} in {SHAPES_CSV.name}")
    return tuple(cases)


def _quick() -> tuple[Case, ...]:
    """Every algorithm and variant once, at sizes the Triton interpreter runs in about a second."""
    q = "quick"
    return (
        conv(1, 16, 10, 10, 16, 3, 3, 1, 1, label="3x3 same (winograd/fft)", source=q),
        conv(2, 16, 9, 9, 32, 3, 3, 1, 0, label="3x3 valid, odd size, batch 2", source=q),
        conv(1, 16, 9, 9, 16, 3, 3, 2, 1, label="3x3 stride 2", source=q),
        conv(1, 32, 8, 8, 16, 1, 1, label="1x1", source=q),
        conv(1, 16, 12, 12, 16, 3, 3, 1, 2, 2, label="3x3 dilation 2", source=q),
        conv(1, 16, 10, 10, 16, 3, 3, 1, 1, 1, 16, label="depthwise 3x3", source=q),
        conv(1, 3, 16, 16, 16, 5, 5, 2, 2, label="RGB stem 5x5/2 (C=3)", source=q),
        tconv(1, 16, 5, 5, 16, 4, 4, 2, 1, label="4x4/2 up (DCGAN-style)", source=q),
        tconv(1, 16, 4, 4, 8, 2, 2, 2, 0, label="2x2/2 up-conv (U-Net-style)", source=q),
        pool("max_pool2d", 1, 8, 15, 15, 3, 2, 1, label="max 3x3/2 pad 1", source=q),
        pool("max_pool2d", 1, 8, 14, 14, 3, 2, 0, ceil=True, label="max 3x3/2 ceil_mode", source=q),
        pool("avg_pool2d", 1, 8, 9, 9, 3, 1, 1, label="avg 3x3/1 pad 1", source=q),
        pool("avg_pool2d", 1, 8, 9, 9, 2, 2, 1, count_include_pad=False, label="avg 2x2/2 pad 1, pad not counted",
             source=q),
        gap(2, 16, 7, 7, label="global average", source=q),
        norm("batch_norm", 2, 16, 8, 8, label="batch norm, running stats", source=q),
        norm("batch_norm", 4, 8, 6, 6, training=True, label="batch norm, batch stats", source=q),
        norm("layer_norm", 2, 8, 6, 6, label="layer norm over CxHxW", source=q),
        norm("instance_norm", 2, 8, 8, 8, label="instance norm", source=q),
        norm("group_norm", 2, 16, 6, 6, groups=4, label="group norm, 4 groups", source=q),
        # the backward modes once: a strided 3x3 (dgrad through the phase kernel), its wgrad, a
        # training step through every forward algorithm that applies
        *modes(conv(1, 16, 9, 9, 16, 3, 3, 2, 1, label="3x3 stride 2", source=q), BACKWARD_MODES),
        attack("fgsm", 2, 1, 8, 8, 8, 0.1, label="FGSM on small_cnn, digits-sized", source=q),
        attack("pgd", 2, 1, 8, 8, 8, 0.1, steps=10, label="PGD-10 on small_cnn, digits-sized", source=q),
    )


def _seed() -> tuple[Case, ...]:
    """One case per variant a CNN course teaches (batch 8, CIFAR/MNIST-sized images)."""
    s = "seed"
    return (
        conv(8, 1, 32, 32, 6, 5, 5, label="single channel, valid (LeNet-5 C1)", source=s),
        conv(8, 16, 32, 32, 32, 3, 3, 1, 0, label="valid", source=s),
        conv(8, 16, 32, 32, 32, 3, 3, 1, 1, label="same", source=s),
        conv(8, 16, 32, 32, 32, 3, 3, 2, 1, label="strided", source=s),
        conv(8, 16, 32, 32, 32, 3, 3, 1, 2, 2, label="dilated", source=s),
        conv(8, 32, 32, 32, 64, 1, 1, label="1x1 (pointwise)", source=s),
        conv(8, 64, 16, 16, 128, 3, 3, 1, 1, label="multi-channel", source=s),
        conv(8, 32, 16, 16, 32, 3, 3, 1, 1, 1, 32, label="depthwise", source=s),
        tconv(8, 32, 8, 8, 16, 4, 4, 2, 1, label="transposed 4x4/2", source=s),
        pool("max_pool2d", 8, 16, 32, 32, 2, 2, label="max pool 2x2/2", source=s),
        pool("avg_pool2d", 8, 16, 32, 32, 2, 2, label="avg pool 2x2/2", source=s),
        gap(8, 64, 8, 8, label="global average pool", source=s),
        norm("batch_norm", 8, 16, 32, 32, training=True, label="batch norm (training)", source=s),
        norm("layer_norm", 8, 16, 32, 32, label="layer norm", source=s),
        norm("instance_norm", 8, 16, 32, 32, label="instance norm", source=s),
    )


def _transposed() -> tuple[Case, ...]:
    dcgan = ("DCGAN generator: pytorch/examples dcgan/main.py (nz=100, ngf=64, batch 64), "
             "Radford et al. arXiv:1511.06434")
    unet = "U-Net up-convolutions, batch 1 (Ronneberger et al., MICCAI 2015, arXiv:1505.04597, Fig. 1)"
    return (
        tconv(64, 100, 1, 1, 512, 4, 4, 1, 0, label="dcgan.project 1->4", source=dcgan),
        tconv(64, 512, 4, 4, 256, 4, 4, 2, 1, label="dcgan.up1 4->8", source=dcgan),
        tconv(64, 256, 8, 8, 128, 4, 4, 2, 1, label="dcgan.up2 8->16", source=dcgan),
        tconv(64, 128, 16, 16, 64, 4, 4, 2, 1, label="dcgan.up3 16->32", source=dcgan),
        tconv(64, 64, 32, 32, 3, 4, 4, 2, 1, label="dcgan.rgb 32->64", source=dcgan),
        tconv(1, 1024, 28, 28, 512, 2, 2, 2, 0, label="unet.up4 28->56", source=unet),
        tconv(1, 512, 52, 52, 256, 2, 2, 2, 0, label="unet.up3 52->104", source=unet),
        tconv(1, 256, 100, 100, 128, 2, 2, 2, 0, label="unet.up2 100->200", source=unet),
        tconv(1, 128, 196, 196, 64, 2, 2, 2, 0, label="unet.up1 196->392", source=unet),
    )


def _pool() -> tuple[Case, ...]:
    rn, vgg = "ResNet-50 (torchvision resnet50)", "VGG-16 (Simonyan & Zisserman 2015)"
    return (
        pool("max_pool2d", 32, 64, 112, 112, 3, 2, 1, label="resnet50.maxpool 3x3/2", source=rn),
        pool("max_pool2d", 32, 64, 112, 112, 3, 2, 0, ceil=True, label="googlenet.maxpool1 3x3/2 ceil",
             source="GoogLeNet (torchvision googlenet, ceil_mode=True)"),
        pool("max_pool2d", 32, 64, 224, 224, 2, 2, label="vgg16.pool1", source=vgg),
        pool("max_pool2d", 32, 128, 112, 112, 2, 2, label="vgg16.pool2", source=vgg),
        pool("max_pool2d", 32, 256, 56, 56, 2, 2, label="vgg16.pool3", source=vgg),
        pool("max_pool2d", 32, 512, 28, 28, 2, 2, label="vgg16.pool4", source=vgg),
        pool("max_pool2d", 32, 512, 14, 14, 2, 2, label="vgg16.pool5", source=vgg),
        pool("avg_pool2d", 32, 192, 35, 35, 3, 1, 1, label="inception_v3.mixed5b branch_pool 3x3/1",
             source="Inception-v3 (torchvision InceptionA, avg_pool2d 3x3/1 pad 1)"),
        gap(32, 2048, 7, 7, label="resnet50.avgpool", source=rn),
        gap(32, 1280, 7, 7, label="mobilenet_v2.avgpool", source="MobileNetV2 (torchvision)"),
    )


def _norm() -> tuple[Case, ...]:
    rn = "ResNet-50 batch norms, batch 32 (He et al. 2016)"
    gn = "ResNet-50 with GroupNorm G=32 (Wu & He, ECCV 2018)"
    style = ("fast neural style TransformerNet, batch 4, 256x256 (pytorch/examples fast_neural_style; "
             "Ulyanov et al. 2016)")
    critic = "DCGAN-style critic with layer norm, batch 64 (WGAN-GP, Gulrajani et al. 2017)"
    return (
        norm("batch_norm", 32, 64, 112, 112, label="resnet50.bn1 (eval)", source=rn),
        norm("batch_norm", 32, 256, 56, 56, label="resnet50.layer1 bn3 (eval)", source=rn),
        norm("batch_norm", 32, 512, 28, 28, label="resnet50.layer2 bn3 (eval)", source=rn),
        norm("batch_norm", 32, 1024, 14, 14, label="resnet50.layer3 bn3 (eval)", source=rn),
        norm("batch_norm", 32, 2048, 7, 7, label="resnet50.layer4 bn3 (eval)", source=rn),
        norm("batch_norm", 32, 64, 112, 112, training=True, label="resnet50.bn1 (train)", source=rn),
        norm("batch_norm", 32, 256, 56, 56, training=True, label="resnet50.layer1 bn3 (train)", source=rn),
        norm("group_norm", 32, 256, 56, 56, groups=32, label="resnet50-gn.layer1", source=gn),
        norm("group_norm", 32, 1024, 14, 14, groups=32, label="resnet50-gn.layer3", source=gn),
        norm("instance_norm", 4, 32, 256, 256, label="style.conv1 in1", source=style),
        norm("instance_norm", 4, 64, 128, 128, label="style.conv2 in2", source=style),
        norm("instance_norm", 4, 128, 64, 64, label="style.res in", source=style),
        norm("layer_norm", 64, 128, 16, 16, label="critic.ln2", source=critic),
        norm("layer_norm", 64, 256, 8, 8, label="critic.ln3", source=critic),
        norm("layer_norm", 64, 512, 4, 4, label="critic.ln4", source=critic),
    )


#: the modes a training suite measures per layer: fprop, dgrad, wgrad, and the step as a whole
TRAIN_MODES = ("fwd", "dgrad", "wgrad", "fwd+bwd")
BACKWARD_MODES = ("dgrad", "wgrad", "fwd+bwd")


def modes(case: Case, which) -> tuple[Case, ...]:
    """``case`` once per mode (the label says which)."""
    return tuple(replace(case, mode=m, label=f"{case.label} [{m}]") for m in which)


def _train() -> tuple[Case, ...]:
    """Every distinct ResNet-50 and MobileNetV2 convolution in each training mode."""
    layers = tuple(replace(c, label=f"resnet50.{c.label}") for c in csv_cases("resnet50")) + \
        tuple(replace(c, label=f"mobilenet_v2.{c.label}") for c in csv_cases("mbv2"))
    return tuple(m for layer in layers for m in modes(layer, TRAIN_MODES))


def _attack() -> tuple[Case, ...]:
    """FGSM and PGD-10 through convbench.models.small_cnn: digits (8x8 grey), MNIST (28x28 grey)
    and CIFAR-10 (32x32 RGB) sized, batch 128 (Madry et al. 2018 use eps 0.3 on MNIST, 8/255 on
    CIFAR-10, step eps/4)."""
    src = "FGSM (Goodfellow et al. 2015), PGD (Madry et al. 2018) on convbench.models.small_cnn"
    cases = []
    for label, (c, h, w, width, eps) in {"digits": (1, 8, 8, 16, 0.2), "mnist": (1, 28, 28, 32, 0.3),
                                         "cifar10": (3, 32, 32, 64, 8 / 255)}.items():
        cases.append(attack("fgsm", 128, c, h, w, width, eps, label=f"{label} FGSM", source=src))
        cases.append(attack("pgd", 128, c, h, w, width, eps, steps=10, label=f"{label} PGD-10", source=src))
    return tuple(cases)


def _pick(suite: str, labels: tuple[str, ...]) -> tuple[Case, ...]:
    by_label = {c.label: c for c in csv_cases(CSV_SUITES[suite][0])}
    return tuple(replace(by_label[label], label=f"{suite}.{label}") for label in labels)


def _gpu() -> tuple[Case, ...]:
    """One layer of each kind at its real size (batch 32): what a first GPU run should cover."""
    return (
        _pick("resnet50", ("conv1", "l2.3x3", "l3.1x1a", "l4.3x3"))
        + _pick("vgg16", ("conv4",))
        + _pick("mobilenet_v2", ("b3.dw", "b2.pw-proj"))
        + tuple(c for c in _pool() if c.label in ("resnet50.maxpool 3x3/2", "resnet50.avgpool"))
        + tuple(c for c in _norm() if c.label in ("resnet50.layer1 bn3 (eval)", "resnet50.layer1 bn3 (train)",
                                                  "resnet50-gn.layer1"))
    )


#: network suite name -> network; each is the whole network at batch 32, 224x224, plus its distinct
#: conv layers, each with how often it occurs (`--scale` shrinks resolution and batch, `--batch` sets it)
NETWORK_SUITES = {f"{name}-net": name for name in NETWORKS}
NETWORK_BATCH = 32
_NETWORK_SOURCE = NETWORK_SOURCE
#: the networks whose suites also hold a training step (forward + backward, no optimizer)
TRAINING_STEP_NETWORKS = ("resnet50", "mobilenet_v2")


def network_suite(name: str, geom: NetworkGeometry, description: str = "") -> Suite:
    """The whole network of ``geom`` and its distinct conv layers at that batch and resolution
    (``count``: occurrences in one forward; ``label``: the first module that has the geometry)."""
    from convbench import models  # lazily: torch; the catalog is imported by the reports

    net = models.ZOO[geom.model](geom.classes, algorithm="torch")
    cases = [Case("network", geom, label=f"{geom.model} (whole network)", source=_NETWORK_SOURCE)]
    if geom.model in TRAINING_STEP_NETWORKS:
        cases.append(Case("network", geom, label=f"{geom.model} (training step)", source=_NETWORK_SOURCE,
                          mode="fwd+bwd"))
    for layer, count, module in models.distinct_conv_layers(net, (geom.n, 3, geom.h, geom.w)):
        cases.append(Case("conv2d", layer, label=module, source=_NETWORK_SOURCE, count=count))
    step = " and a training step (forward + backward, no optimizer)" if geom.model in TRAINING_STEP_NETWORKS else ""
    description = description or (f"{geom.model}: the whole network's forward{step} (every policy: auto, tuned, "
                                  f"fused, each algorithm forced, torch eager and torch.compile) and its distinct "
                                  f"conv layers with their counts")
    return Suite(name, description, tuple(cases), rebuild=network_suite)


_BUILT_IN = {
    "quick": ("CPU-sized: every convolution algorithm, transposed convolution, pooling and normalization once", _quick),
    "gpu": ("GPU-sized (the default on a GPU): ResNet-50 stem/3x3/1x1, VGG-16 3x3, MobileNetV2 depthwise and "
            "projection, pools and norms at batch 32", _gpu),
    "train": ("ResNet-50 and MobileNetV2 convolutions, batch 32, in each training mode: fprop, dgrad, wgrad and "
              "the whole step (fwd+bwd)", _train),
    "attack": ("one FGSM step and a PGD-10 attack through a small CNN built from convbench.nn (digits, MNIST and "
               "CIFAR-10 sized, batch 128): ours against the same network on torch", _attack),
    "seed": ("one case per variant of a CNN course (valid, same, strided, dilated, 1x1, ...)", _seed),
    "transposed": ("DCGAN generator and U-Net decoder transposed convolutions", _transposed),
    "pool": ("pooling layers of ResNet-50, GoogLeNet, VGG-16, Inception-v3, MobileNetV2", _pool),
    "norm": ("batch/group/instance/layer normalization layers of real networks", _norm),
}

#: every suite name, in the order `convbench list` shows them
SUITE_NAMES = ("quick", "gpu", "train", "attack", "seed", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0", "deepbench",
               "dilated", "transposed", "pool", "norm", *NETWORK_SUITES)
DEFAULT_SUITE = "quick"
#: the default on a machine with a CUDA GPU (see :func:`default_suite`)
DEFAULT_GPU_SUITE = "gpu"


def default_suite() -> str:
    """``gpu`` where a CUDA GPU is present, else the CPU-sized ``quick``."""
    from convbench.runtime import cuda_available  # the one device probe (torch, imported on demand)

    return DEFAULT_GPU_SUITE if cuda_available() else DEFAULT_SUITE


def get_suite(name: str) -> Suite:
    """The named suite at full size (see :func:`convbench.suites.plan.shapes.scale_suite` to shrink it)."""
    if name in CSV_SUITES:
        net, description = CSV_SUITES[name]
        return Suite(name, description, csv_cases(net))
    if name in _BUILT_IN:
        description, build = _BUILT_IN[name]
        return Suite(name, description, build())
    if name in NETWORK_SUITES:
        return network_suite(name, NetworkGeometry(NETWORK_SUITES[name], NETWORK_BATCH))
    raise ValueError(f"suite must be one of {SUITE_NAMES}, got {name!r}")
