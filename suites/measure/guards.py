"""Cheat guards: the ways a benchmarked call can look faster or more correct than it is.

Checked once per cell by the runner, around its checked (untimed) calls, never inside the timed
region:

* **input mutation**: every input the call reads is checksummed before and after the first call;
  a call that writes into one fails the cell, naming it (``running_mean``/``running_var`` are
  excepted: batch norm in training updates them by definition);
* **aliasing**: an output that shares memory with an input, with the L2-flush buffer, or with
  the output of the previous call fails the cell;
* **replay**: the cell is checked on a second, independently drawn input set too, so a result
  computed once and returned again (or cached per shape) cannot pass;
* **escaping work** (GPU): one call is timed with a device-wide synchronisation next to the CUDA
  events; work that the events miss (launched on another stream, or still running when the call
  returned) makes the synchronised time far exceed the events' time.

Each guard returns a message naming the cheat, or None.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

#: inputs an op updates in place by its contract
IN_PLACE_INPUTS = ("running_mean", "running_var")
#: a synchronised call this much slower than the events' median (and by at least ESCAPE_MIN_MS)
#: means work escaped the events
ESCAPE_FACTOR = 3.0
ESCAPE_MIN_MS = 0.5


def _is_tensor(x) -> bool:
    return hasattr(x, "untyped_storage") and hasattr(x, "detach")


def digest(value) -> str | None:
    """A checksum of the bytes of a tensor or array (None for anything else)."""
    if _is_tensor(value):
        t = value.detach().contiguous()
        data = t.view(-1).view(dtype=_byte_dtype()).cpu().numpy() if t.numel() else np.zeros(0, np.uint8)
        return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
    if isinstance(value, np.ndarray):
        return hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).hexdigest()
    return None


def _byte_dtype():
    import torch  # lazily: the numpy backend needs no torch here

    return torch.uint8


def input_digests(inputs: dict) -> dict[str, str]:
    return {name: d for name, value in inputs.items()
            if name not in IN_PLACE_INPUTS and (d := digest(value)) is not None}


def mutated_inputs(before: dict[str, str], inputs: dict) -> str | None:
    changed = [name for name, d in before.items() if digest(inputs[name]) != d]
    if changed:
        return "cheat guard: the call wrote into its input " + ", ".join(repr(n) for n in changed)
    return None


def _leaves(out) -> list:
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _leaves(item)]
    return [out]


def _span(x) -> tuple[int, int] | None:
    """(first byte, end byte) of the memory a tensor or array lives in."""
    if _is_tensor(x):
        s = x.untyped_storage()
        return (s.data_ptr(), s.data_ptr() + s.nbytes()) if s.nbytes() else None
    if isinstance(x, np.ndarray):
        base = x
        while isinstance(base.base, np.ndarray):
            base = base.base
        start = base.__array_interface__["data"][0]
        return (start, start + base.nbytes) if base.nbytes else None
    return None


def _overlap(a, b) -> bool:
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None:
        return False
    if _is_tensor(a) != _is_tensor(b) or (_is_tensor(a) and a.device != b.device):
        return False
    return sa[0] < sb[1] and sb[0] < sa[1]


def aliasing(out, inputs: dict, previous=None, flush=()) -> str | None:
    """Why ``out`` shares memory with something it must not (an input, a previous call's
    output, one of the ``flush`` buffers), or None."""
    for leaf in _leaves(out):
        for name, value in inputs.items():
            if _overlap(leaf, value):
                return f"cheat guard: the output shares memory with the input {name!r}"
        if any(_overlap(leaf, buf) for buf in flush):
            return "cheat guard: the output shares memory with the L2-flush buffer"
        if previous is not None and any(_overlap(leaf, p) for p in _leaves(previous)):
            return "cheat guard: the output shares memory with the previous call's output (a cached result)"
    return None


def flush_buffers() -> list:
    """The L2-flush buffers allocated so far (GPU runs)."""
    from convbench import runtime  # the one owner of the flush buffers

    return list(runtime._FLUSH_BUFFERS.values())


def escaped_work(fn, events_ms: float, calls: int = 3) -> str | None:
    """GPU: median of ``calls`` calls timed with ``torch.cuda.synchronize()`` (device-wide), against
    the events' median ``events_ms``; far slower means the events missed work."""
    import torch  # lazily: GPU only

    torch.cuda.synchronize()
    walls = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
    wall = sorted(walls)[len(walls) // 2]
    if wall > ESCAPE_FACTOR * events_ms and wall - events_ms > ESCAPE_MIN_MS:
        return (f"cheat guard: a synchronised call takes {wall:.3f} ms, the CUDA events {events_ms:.3f} ms: work "
                "escapes the timed region (another stream, or not finished when the call returns)")
    return None
