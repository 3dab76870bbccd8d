"""The one comparison helper every test uses, and the tolerance model behind it.

The implementation lives in :mod:`convbench.suites.measure.accuracy` so that the benchmark runner judges every
cell with exactly the same formula as the tests; this module re-exports it under the names the
tests use (``tolerance``, ``errors``, ``assert_close``, ``rounded``, ``as_ref``).  See that
module for the error measures and the tolerance model.
"""

from convbench.suites.measure.accuracy import (SAFETY, UNIT_ROUNDOFF, Check, as_ref, assert_close, check, errors,  # noqa: F401
                             rounded, tolerance)
