"""Compare two ``convbench static`` documents: the GPU-free performance regression gate.

Per (kernel spec, target) present on both sides, flag:

* ``spill``: spill traffic (STL+LDL bytes) appeared or grew;
* ``registers``: registers grew by more than ``reg_threshold`` (relative, default 10%);
* ``tensor_cores``: the baseline had the target's tensor-core instructions (HMMA on sm_80,
  HGMMA on sm_90) and the new build has none;

and on every new result, whether or not the baseline has it:

* ``shared_memory``: shared memory beyond what one block may opt in to on the target;
* ``default_spill``: a ``default=True`` config spills;
* ``compile_error``: the spec no longer compiles.

Specs only in one side are listed (new / missing); ``strict`` makes them flags too.  A Triton or
ptxas version different from the baseline's is reported: the numbers are only comparable within
one version, so regenerate the baseline when upgrading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .result import StaticResult, parse_target, results_of, target_name


@dataclass
class Flag:
    name: str
    target: str
    kind: str
    message: str


@dataclass
class StaticComparison:
    flags: list = field(default_factory=list)
    #: (name, target) only in the new document / only in the baseline
    new: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    compared: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict:
        return {"failed": self.failed, "compared": self.compared,
                "flags": [asdict(f) for f in self.flags], "new": [list(k) for k in self.new],
                "missing": [list(k) for k in self.missing], "notes": self.notes}


def _absolute_flags(r: StaticResult) -> list[Flag]:
    if r.error:
        return [Flag(r.name, r.target, "compile_error", r.error.splitlines()[0][:300])]
    out = []
    if r.total_shared_bytes > r.shared_limit_bytes:
        out.append(Flag(r.name, r.target, "shared_memory",
                        f"{r.total_shared_bytes} bytes of shared memory > the {r.target} limit of "
                        f"{r.shared_limit_bytes} bytes per block"))
    if r.default and r.spills:
        out.append(Flag(r.name, r.target, "default_spill",
                        f"default config spills ({r.spill_store_bytes} B stored, "
                        f"{r.spill_load_bytes} B loaded)"))
    return out


def _relative_flags(b: StaticResult, n: StaticResult, reg_threshold: float) -> list[Flag]:
    if n.error or b.error:
        return []
    out = []
    b_spill = b.spill_store_bytes + b.spill_load_bytes
    n_spill = n.spill_store_bytes + n.spill_load_bytes
    if n_spill > b_spill:
        what = "new spill" if b_spill == 0 else "spill grew"
        out.append(Flag(n.name, n.target, "spill",
                        f"{what}: {b_spill} -> {n_spill} bytes of STL+LDL "
                        f"(stack frame {b.stack_bytes} -> {n.stack_bytes} bytes)"))
    if b.registers and n.registers > b.registers * (1.0 + reg_threshold):
        out.append(Flag(n.name, n.target, "registers",
                        f"registers {b.registers} -> {n.registers} "
                        f"(+{n.registers / b.registers - 1:.0%} > {reg_threshold:.0%})"))
    if b.has_tensor_cores and not n.has_tensor_cores:
        kind = "HGMMA" if n.cc >= 90 else "HMMA"
        now = ", ".join(f"{k} x{v}" for k, v in n.mma.items()) or "no MMA at all"
        out.append(Flag(n.name, n.target, "tensor_cores",
                        f"lost {kind}: {b.tensor_core_instructions} -> 0 ({now})"))
    return out


def compare_documents(base: dict, new: dict, *, reg_threshold: float = 0.10, strict: bool = False,
                      targets=None, filter: str | None = None) -> StaticComparison:
    """Flags of ``new`` against ``base``; ``targets``/``filter`` restrict both sides alike."""
    if reg_threshold < 0:
        raise ValueError(f"reg_threshold must be >= 0, got {reg_threshold}")
    wanted = {target_name(parse_target(t)) for t in targets} if targets else None

    def index(doc):
        return {(r.name, r.target): r for r in results_of(doc)
                if (wanted is None or r.target in wanted) and (not filter or filter in r.name)}

    b_idx, n_idx = index(base), index(new)
    cmp = StaticComparison()
    for key in ("triton_version", "ptxas_version"):
        if base.get(key) != new.get(key):
            cmp.notes.append(f"{key} differs: baseline {base.get(key)}, now {new.get(key)}; "
                             "numbers are comparable only within one version (regenerate the baseline)")
    for key in sorted(n_idx):
        n = n_idx[key]
        cmp.flags += _absolute_flags(n)
        if key in b_idx:
            cmp.compared += 1
            cmp.flags += _relative_flags(b_idx[key], n, reg_threshold)
        else:
            cmp.new.append(key)
    cmp.missing = sorted(set(b_idx) - set(n_idx))
    if strict:
        cmp.flags += [Flag(n, t, "new_kernel", "not in the baseline") for n, t in cmp.new]
        cmp.flags += [Flag(n, t, "missing_kernel", "in the baseline, not compiled now")
                      for n, t in cmp.missing]
    return cmp
