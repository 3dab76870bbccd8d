"""convbench: a compiler-backed benchmark suite for convolution, pooling and normalization kernels.

One import name, layers that import one way (bottom to top)::

    convbench.reference   float64 NumPy references and the geometry rules
    convbench.kernels     Triton kernels, launchers mirroring torch.nn.functional (+ autograd)
    convbench.nn          torch.nn twins on the kernels, convert(model); convbench.models,
                          convbench.attacks (FGSM, PGD) built on them
    convbench.suites      what to run (plan), how to measure (measure), regression verdicts
                          (regress), static compile analysis (static)
    convbench.reports     tables from DataFrames, Markdown/HTML, plots, comparison reports
    convbench.cli         the ``convbench`` command (``python -m convbench``)

Results as pandas::

    import convbench
    df = convbench.load("runs/r50")                 # one row per cell; df.attrs["env"]
    both = convbench.load_many(["runs/a", "runs/b"])  # with a ``run`` column

Importing ``convbench`` imports none of the layers; ``convbench.kernels`` (and the other
subpackages) are imported on first use, as ``import convbench.kernels`` would.  The kernels define
Triton kernels, and ``TRITON_INTERPRET`` must be decided before that (:mod:`convbench.runtime`).
"""

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "load", "load_many"]

#: the subpackages reachable as attributes of the import root
SUBPACKAGES = ("runtime", "reference", "kernels", "nn", "models", "attacks", "suites", "reports", "cli")


def __getattr__(name: str):
    """``convbench.kernels`` and the like without an explicit import of the subpackage (PEP 562)."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(path):
    """A run folder (or a ``results.jsonl``) as a ``pandas.DataFrame``, one row per cell
    (:func:`convbench.suites.measure.frame.load`)."""
    from .suites.measure.frame import load as _load  # pandas only when asked for

    return _load(path)


def load_many(paths, labels=None):
    """Several runs in one ``pandas.DataFrame`` with a ``run`` column
    (:func:`convbench.suites.measure.frame.load_many`)."""
    from .suites.measure.frame import load_many as _load_many  # as in load(): pandas only when asked for

    return _load_many(paths, labels)
