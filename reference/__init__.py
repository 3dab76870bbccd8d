"""float64 NumPy references for every convbench operator and convolution algorithm.

Same names and arguments as ``torch.nn.functional`` (arrays or CPU tensors in, float64
``ndarray`` out), plus one reference per convolution algorithm.  Imports nothing of convbench
outside this package.
"""

from .geometry import ConvGeometry, ConvTransposeGeometry, NormGeometry, PoolGeometry
from .conv import conv1d, conv1d_input_grad, conv1d_weight_grad, conv2d, conv2d_input_grad, conv2d_weight_grad
from .algorithms import *  # noqa: F401,F403  (names listed in algorithms.__all__)
from .norm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from . import algorithms, norm, pool

__all__ = [
    "ConvGeometry", "ConvTransposeGeometry", "PoolGeometry", "NormGeometry",
    "conv2d", "conv1d", "conv2d_input_grad", "conv2d_weight_grad", "conv1d_input_grad",
    "conv1d_weight_grad", *algorithms.__all__, *pool.__all__, *norm.__all__,
]
