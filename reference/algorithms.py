"""Algorithm references for convolution, one module each, exported from here.

* :mod:`.im2col`    ``im2col``, ``conv2d_im2col``: explicit column matrix times weight matrix;
* :mod:`.winograd`  ``winograd_matrices``, ``conv2d_winograd``: F(m x m, 3x3), transforms derived
  from interpolation points, optional rounding of transformed operands;
* :mod:`.fft`       ``conv2d_fft``: full-image FFT or tiled overlap-add;
* :mod:`.toeplitz`  ``toeplitz_matrix``, ``conv2d_toeplitz``: the convolution as a dense matrix;
* :mod:`.transpose` ``conv_transpose2d``: scatter-add over taps (the adjoint of ``conv2d``).

Every function takes NumPy arrays or CPU tensors and returns float64 ndarrays; every one is
tested against ``reference.conv2d`` (itself tested against torch float64) in
``tests/test_reference_conv.py``.
"""

from .fft import conv2d_fft
from .im2col import conv2d_im2col, im2col
from .toeplitz import conv2d_toeplitz, toeplitz_matrix
from .transpose import conv_transpose2d
from .winograd import conv2d_winograd, default_points, round_to, winograd_matrices

__all__ = [
    "im2col", "conv2d_im2col",
    "winograd_matrices", "default_points", "conv2d_winograd", "round_to",
    "conv2d_fft",
    "toeplitz_matrix", "conv2d_toeplitz",
    "conv_transpose2d",
]
