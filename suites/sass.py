"""Read a cubin without a GPU: resource usage and SASS from the tools inside the Triton wheel.

``cuobjdump -res-usage -sass`` (shipped in ``triton/backends/nvidia/bin``) prints, per function,
the register count, stack frame, static shared memory and the disassembly. From the SASS we
count instructions, spill traffic (``STL``/``LDL`` bytes, which is what ``ptxas -v`` reports as
"bytes spill stores/loads" for Triton kernels, whose only local memory is spills) and the
tensor-core instructions: ``HMMA``/``IMMA``/``DMMA`` (warp-level, sm_80) and the sm_90
warpgroup forms ``HGMMA``/``IGMMA``/``QGMMA``.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field

#: warp-level MMA (Ampere and later) and warpgroup MMA (Hopper) opcode families
WARP_MMA = ("HMMA", "IMMA", "DMMA")
WARPGROUP_MMA = ("HGMMA", "IGMMA", "QGMMA")

_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?P<body>[^;]*);")
_PRED = re.compile(r"^@!?U?P[T0-9]+\s+")
_RES = re.compile(r"^\s*Function\s+(?P<name>\S+):\s*$")
_RES_FIELDS = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")
_WIDTH = {"64": 8, "128": 16, "U8": 1, "S8": 1, "U16": 2, "S16": 2}


def tool_path(name: str) -> str:
    """Path of an NVIDIA tool bundled with Triton (``cuobjdump``, ``nvdisasm``, ``ptxas``)."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} not found in the Triton wheel (looked at {path})")
    return path


@functools.lru_cache(maxsize=None)
def ptxas_version() -> str:
    """``ptxas`` release as ``"12.8.93"`` (the one Triton compiles with for sm_80/sm_90)."""
    out = subprocess.run([tool_path("ptxas"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"\bV(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else out.strip().splitlines()[-1]


@dataclass
class SassSummary:
    """What one function's SASS and resource usage say."""

    registers: int = 0
    stack_bytes: int = 0
    static_shared_bytes: int = 0
    local_bytes: int = 0
    instructions: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    #: opcode family (e.g. "HMMA", "HGMMA") -> instruction count, tensor-core families only
    mma: dict[str, int] = field(default_factory=dict)


def opcode(body: str) -> str:
    """The opcode with modifiers (``"LDL.LU.64"``) of one SASS instruction body."""
    body = _PRED.sub("", body.strip())
    return body.split(None, 1)[0] if body else ""


def _access_bytes(op: str) -> int:
    for mod in op.split(".")[1:]:
        if mod in _WIDTH:
            return _WIDTH[mod]
    return 4


def parse_res_usage(text: str) -> dict[str, dict[str, int]]:
    """``cuobjdump -res-usage`` output -> {function: {"REG": .., "STACK": .., "SHARED": ..}}."""
    usage: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        m = _RES.match(line)
        if m:
            current = m.group("name")
            continue
        if current is not None and "REG:" in line:
            usage[current] = {k: int(v) for k, v in _RES_FIELDS.findall(line)}
            current = None
    return usage


def parse_sass(text: str) -> tuple[int, Counter]:
    """SASS listing -> (instruction count without NOP padding, Counter of opcodes)."""
    ops: Counter = Counter()
    for line in text.splitlines():
        m = _INSTR.match(line)
        if m:
            op = opcode(m.group("body"))
            if op and op != "NOP":
                ops[op] += 1
    return sum(ops.values()), ops


def summarise(text: str, function: str | None = None) -> SassSummary:
    """Combine ``cuobjdump -res-usage -sass`` output into a :class:`SassSummary`."""
    usage = parse_res_usage(text)
    if function is None and len(usage) == 1:
        function = next(iter(usage))
    res = usage.get(function or "", {})
    count, ops = parse_sass(text)
    summary = SassSummary(registers=res.get("REG", 0), stack_bytes=res.get("STACK", 0),
                          static_shared_bytes=res.get("SHARED", 0), local_bytes=res.get("LOCAL", 0),
                          instructions=count)
    mma: Counter = Counter()
    for op, n in ops.items():
        base = op.split(".", 1)[0]
        if base == "STL":
            summary.spill_store_bytes += n * _access_bytes(op)
        elif base == "LDL":
            summary.spill_load_bytes += n * _access_bytes(op)
        elif base in WARP_MMA or base in WARPGROUP_MMA:
            mma[base] += n
    summary.mma = dict(sorted(mma.items()))
    return summary


def disassemble(cubin: bytes, function: str | None = None) -> SassSummary:
    """Run the bundled ``cuobjdump -res-usage -sass`` on a cubin and summarise it."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool_path("cuobjdump"), "-res-usage", "-sass", f.name],
                             capture_output=True, text=True, check=True).stdout
    return summarise(out, function)
