"""What a static compile of one kernel spec records, the targets, and the JSON documents.

A :class:`StaticResult` is one (spec, target) pair: registers, stack and spill bytes, shared
memory, SASS instruction count and tensor-core instructions.  ``convbench static --format json``
writes a document of them (:func:`to_document`, one result per line by :func:`dump_document`), and
a committed document is the baseline the gate compares with (:mod:`.baseline`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from . import sass

#: bump when the meaning of a recorded field changes (invalidates the cache)
SCHEMA = 1
TARGETS = {"sm_80": 80, "sm_90": 90}
#: largest shared memory one block may opt in to, bytes (A100: 163 KB, H100: 227 KB)
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


def parse_target(target) -> int:
    """``"sm_90"``, ``"sm90"``, ``"90"`` or ``90`` -> compute capability 90."""
    text = str(target).strip().lower().replace("sm_", "").replace("sm", "")
    if not text.isdigit() or int(text) not in SHARED_LIMIT:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return int(text)


def target_name(cc: int) -> str:
    return f"sm_{cc}"


@dataclass
class StaticResult:
    """What compiling one spec for one target produced."""

    name: str
    target: str
    num_warps: int = 4
    num_stages: int = 3
    default: bool = False
    expect_tensor_cores: bool = False
    registers: int = 0
    stack_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    #: Triton's (dynamic) shared memory allocation, bytes
    shared_bytes: int = 0
    #: static shared memory in the cubin (barriers and the like), bytes
    static_shared_bytes: int = 0
    sass_instructions: int = 0
    #: tensor-core opcode family -> count, e.g. {"HGMMA": 16}
    mma: dict = field(default_factory=dict)
    triton_version: str = ""
    ptxas_version: str = ""
    #: the compile or disassembly error, if any (then the numbers above are zero)
    error: str | None = None
    compile_seconds: float = field(default=0.0, compare=False)
    cached: bool = field(default=False, compare=False)
    #: the kernel's machine code until it is disassembled (not part of the record)
    sass_text: bytes = field(default=b"", compare=False, repr=False)

    @property
    def cc(self) -> int:
        return parse_target(self.target)

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes + self.spill_load_bytes > 0

    @property
    def total_shared_bytes(self) -> int:
        return self.shared_bytes + self.static_shared_bytes

    @property
    def shared_limit_bytes(self) -> int:
        return SHARED_LIMIT[self.cc]

    @property
    def tensor_core_instructions(self) -> int:
        """Tensor-core instructions of the kind the target is judged by: HMMA-family on sm_80,
        warpgroup HGMMA-family on sm_90."""
        families = sass.WARPGROUP_MMA if self.cc >= 90 else sass.WARP_MMA
        return sum(self.mma.get(f, 0) for f in families)

    @property
    def has_tensor_cores(self) -> bool:
        return self.tensor_core_instructions > 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for transient in ("compile_seconds", "cached", "sass_text"):
            d.pop(transient)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StaticResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ------------------------------------------------------------------------------ documents
def versions() -> dict:
    import triton  # triton only when compiling or reading its version (a slow import)

    return {"triton_version": triton.__version__, "ptxas_version": sass.ptxas_version()}


def to_document(results: Sequence[StaticResult], targets: Iterable) -> dict:
    """The JSON document ``convbench static --format json`` writes (and baselines are)."""
    names = [target_name(parse_target(t)) for t in targets]
    return {
        "schema": SCHEMA, "tool": "convbench static", **versions(), "targets": names,
        "shared_limit_bytes": {t: SHARED_LIMIT[parse_target(t)] for t in names},
        "results": [r.to_dict() for r in sorted(results, key=lambda r: (r.name, r.target))],
    }


def load_document(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "results" not in doc:
        raise ValueError(f"{path} is not a convbench static document (no 'results')")
    return doc


def results_of(doc: dict) -> list[StaticResult]:
    return [StaticResult.from_dict(d) for d in doc["results"]]


def dump_document(doc: dict) -> str:
    """JSON with one result per line, so a baseline's diff shows which kernels changed."""
    head = {k: v for k, v in doc.items() if k != "results"}
    lines = ",\n".join("  " + json.dumps(r, sort_keys=True) for r in doc["results"])
    text = json.dumps(head, indent=1, sort_keys=True)
    return text[:-2] + ',\n "results": [\n' + lines + "\n ]\n}\n"
