"""Read a cubin without a GPU: resource usage and SASS from the tools inside the Triton wheel.

``cuobjdump -res-usage`` (shipped in ``triton/backends/nvidia/bin``) gives each function's
register count, stack frame and static shared memory.  The SASS gives the instruction count,
spill traffic (``STL``/``LDL`` bytes: what ``ptxas -v`` reports as "bytes spill stores/loads"
for Triton kernels, whose only local memory is spills) and the tensor-core instructions:
``HMMA``/``IMMA``/``DMMA`` (warp-level, sm_80) and the sm_90 warpgroup forms
``HGMMA``/``IGMMA``/``QGMMA``.

Disassembling costs ~0.3 s of CPU per cubin however small it is (``cuobjdump -sass`` runs the
disassembler once per ELF), so :func:`disassemble_many` concatenates the ``.text`` sections of
many kernels of one architecture and runs ``nvdisasm --binary SMxx`` once over the lot, then
splits the listing by address; :func:`disassemble` (one cubin through ``cuobjdump -sass``) is
the plain path, and the tests check that both agree.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import struct
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field

#: warp-level MMA (Ampere and later) and warpgroup MMA (Hopper) opcode families
WARP_MMA = ("HMMA", "IMMA", "DMMA")
WARPGROUP_MMA = ("HGMMA", "IGMMA", "QGMMA")

_INSTR = re.compile(r"^\s*/\*(?P<addr>[0-9a-f]{4,})\*/\s+(?P<body>[^;]*);")
_PRED = re.compile(r"^@!?U?P[T0-9]+\s+")
_RES = re.compile(r"^\s*Function\s+(?P<name>\S+):\s*$")
_RES_FIELDS = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")
_WIDTH = {"64": 8, "128": 16, "U8": 1, "S8": 1, "U16": 2, "S16": 2}


def tool_path(name: str) -> str:
    """Path of an NVIDIA tool bundled with Triton (``cuobjdump``, ``nvdisasm``, ``ptxas``)."""
    import triton  # triton only when compiling or reading its version (a slow import)

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
    summary.spill_store_bytes, summary.spill_load_bytes, summary.mma = count_ops(ops)
    return summary


def text_section(cubin: bytes, function: str) -> bytes:
    """The machine code of ``function`` (its ``.text.<function>`` section) from a cubin ELF."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2 or cubin[5] != 1:
        raise ValueError("cubin is not a 64-bit little-endian ELF")
    (shoff,) = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    wanted = f".text.{function}".encode()
    for name, _type, _flags, _addr, offset, size in headers:
        start = names_at + name
        if cubin[start:cubin.index(b"\0", start)] == wanted:
            return cubin[offset:offset + size]
    raise ValueError(f"cubin has no section .text.{function}")


def res_usage(cubin: bytes, function: str | None = None) -> dict[str, int]:
    """``cuobjdump -res-usage`` of one cubin: {"REG": .., "STACK": .., "SHARED": .., ...}."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool_path("cuobjdump"), "-res-usage", f.name],
                             capture_output=True, text=True, check=True).stdout
    usage = parse_res_usage(out)
    if function is None and len(usage) == 1:
        return next(iter(usage.values()))
    return usage.get(function or "", {})


def count_ops(ops: Counter) -> tuple[int, int, dict]:
    """(spill store bytes, spill load bytes, tensor-core family counts) of an opcode Counter."""
    stores = loads = 0
    mma: Counter = Counter()
    for op, n in ops.items():
        base = op.split(".", 1)[0]
        if base == "STL":
            stores += n * _access_bytes(op)
        elif base == "LDL":
            loads += n * _access_bytes(op)
        elif base in WARP_MMA or base in WARPGROUP_MMA:
            mma[base] += n
    return stores, loads, dict(sorted(mma.items()))


def nvdisasm_arch(cc: int) -> str:
    """``nvdisasm --binary`` name of the code Triton emits for ``cc`` (sm_90 -> sm_90a)."""
    return f"SM{cc}a" if cc == 90 else f"SM{cc}"


def disassemble_many(texts: list[bytes], cc: int) -> list[tuple[int, Counter]]:
    """(instruction count, opcode Counter) per raw ``.text`` blob, all of architecture ``cc``,
    from one ``nvdisasm`` run over their concatenation (split again by address)."""
    if not texts:
        return []
    starts, offset = [], 0
    for t in texts:
        if len(t) % 16:
            raise ValueError("SASS text sizes must be multiples of 16 bytes")
        starts.append(offset)
        offset += len(t)
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(b"".join(texts))
        f.flush()
        out = subprocess.run([tool_path("nvdisasm"), "--binary", nvdisasm_arch(cc), "--no-dataflow", f.name],
                             capture_output=True, text=True, check=True).stdout
    ops: list[Counter] = [Counter() for _ in texts]
    for line in out.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        op = opcode(m.group("body"))
        if op and op != "NOP":
            addr = int(m.group("addr"), 16)
            ops[bisect.bisect_right(starts, addr) - 1][op] += 1
    return [(sum(c.values()), c) for c in ops]


def disassemble(cubin: bytes, function: str | None = None) -> SassSummary:
    """Run the bundled ``cuobjdump -res-usage -sass`` on one cubin and summarise it."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool_path("cuobjdump"), "-res-usage", "-sass", f.name],
                             capture_output=True, text=True, check=True).stdout
    return summarise(out, function)
