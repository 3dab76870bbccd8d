"""Networks built from :mod:`convbench.nn`.

:func:`small_cnn` is the network of the attack suite and the digits demonstration: two 3x3
convolutions with batch norm, ReLU, max pooling and adaptive average pooling, then a linear
classifier; every conv, norm and pool layer is a :mod:`convbench.nn` twin, so one ``algorithm=``
switches the whole network between convbench's kernels and torch's.
"""

from .small import SmallCNN, small_cnn

__all__ = ["SmallCNN", "small_cnn"]
