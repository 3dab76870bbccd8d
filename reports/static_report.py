"""``convbench static`` rendered: the per-kernel figures and the regression gate's verdict, as a
table or JSON (:mod:`convbench.suites.static` compiles and compares)."""

from __future__ import annotations

import json

from tabulate import tabulate

from convbench.suites.static import StaticComparison, dump_document, to_document


def render_comparison(cmp: StaticComparison, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(cmp.to_dict(), indent=2) + "\n"
    lines = []
    for note in cmp.notes:
        lines.append(f"note: {note}")
    if cmp.flags:
        rows = [(f.kind, f.name, f.target, f.message) for f in cmp.flags]
        lines.append(tabulate(rows, headers=("flag", "kernel", "target", "detail")))
    for label, keys in (("new (not in baseline)", cmp.new), ("missing (in baseline only)", cmp.missing)):
        if keys:
            lines.append(f"{label}: " + ", ".join(f"{n} [{t}]" for n, t in keys))
    verdict = f"FAIL: {len(cmp.flags)} flag(s)" if cmp.failed else "OK: no static regression"
    lines.append(f"{verdict}; {cmp.compared} compiled kernel/target pairs compared, "
                 f"{len(cmp.new)} new, {len(cmp.missing)} missing")
    return "\n".join(lines) + "\n"


def render_results(results, fmt: str = "table", targets=("sm_80", "sm_90")) -> str:
    """The ``convbench static`` listing (without ``--compare``)."""
    if fmt == "json":
        return dump_document(to_document(results, targets))
    rows = []
    for r in results:
        if r.error:
            rows.append((r.name, r.target, r.num_warps, r.num_stages, "", "", "", "", "", "",
                         "ERROR: " + r.error.splitlines()[0][:80]))
            continue
        mma = ",".join(f"{k}x{v}" for k, v in r.mma.items()) or "-"
        rows.append((r.name, r.target, r.num_warps, r.num_stages, r.registers,
                     f"{r.spill_store_bytes}/{r.spill_load_bytes}", r.stack_bytes,
                     f"{r.total_shared_bytes / 1024:.1f}", r.sass_instructions, mma,
                     ("default" if r.default else "") + (" tc-expected" if r.expect_tensor_cores else "")))
    return tabulate(rows, headers=("kernel", "target", "warps", "stages", "regs", "spill st/ld B",
                                   "stack B", "smem KB", "SASS", "MMA", "notes")) + "\n"
